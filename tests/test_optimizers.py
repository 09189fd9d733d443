"""Functional meta-optimizers agree with torch.optim."""

import pytest
import torch

from flower_difmaml.meta import SGD, Adam, make_meta_optimizer


def _run_torch(optimizer_cls, lr: float, steps: int) -> list[torch.Tensor]:
    w = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
    opt = optimizer_cls([w], lr=lr)
    out = []
    for i in range(steps):
        opt.zero_grad()
        ((w**2).sum() * (i + 1) + w.sum() ** 3).backward()
        opt.step()
        out.append(w.detach().clone())
    return out


def _run_functional(optimizer, steps: int) -> list[torch.Tensor]:
    params = {"w": torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)}
    state = optimizer.init(params)
    out = []
    for i in range(steps):
        w = params["w"].clone().requires_grad_(True)
        (g,) = torch.autograd.grad((w**2).sum() * (i + 1) + w.sum() ** 3, [w])
        params, state = optimizer.step(params, {"w": g}, state)
        out.append(params["w"])
    return out


@pytest.mark.parametrize(("functional", "reference"), [(SGD(0.01), torch.optim.SGD), (Adam(0.01), torch.optim.Adam)])
def test_matches_torch_optim(functional, reference) -> None:
    for ours, theirs in zip(_run_functional(functional, 20), _run_torch(reference, 0.01, 20)):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)


def test_adam_state_is_flat_and_does_not_mutate_inputs() -> None:
    params = {"a": torch.ones(2), "b.weight": torch.zeros(3)}
    adam = Adam(0.1)
    state = adam.init(params)
    assert set(state) == {"step", "exp_avg.a", "exp_avg_sq.a", "exp_avg.b.weight", "exp_avg_sq.b.weight"}
    new_params, new_state = adam.step(params, {"a": torch.ones(2), "b.weight": torch.ones(3)}, state)
    assert float(new_state["step"]) == 1.0 and float(state["step"]) == 0.0
    assert torch.equal(params["a"], torch.ones(2))
    torch.testing.assert_close(new_params["a"], torch.full((2,), 0.9))


def test_adam_state_lives_on_the_parameters_device_and_steps_stacked_agents_there() -> None:
    """The vectorised engine stacks the state over agents and vmaps the step: a step count
    left on the CPU beside moments on a GPU fails there ("meta" stands in for the GPU)."""
    adam = Adam(0.1)
    params = {"w": torch.zeros(3, 4, device="meta"), "b": torch.zeros(4, device="meta")}
    state = adam.init(params)
    assert {v.device.type for v in state.values()} == {"meta"}
    stacked = {n: v.expand(5, *v.shape) for n, v in state.items()}
    agents = {n: p.expand(5, *p.shape) for n, p in params.items()}
    new_params, new_state = torch.func.vmap(adam.step)(agents, agents, stacked)
    assert new_params["w"].shape == (5, 3, 4) and new_state["step"].device.type == "meta"


def test_unknown_meta_optimizer_names_the_key() -> None:
    with pytest.raises(ValueError, match="meta-optimizer: unknown 'rmsprop'; allowed: sgd, adam"):
        make_meta_optimizer("rmsprop", 0.1)
