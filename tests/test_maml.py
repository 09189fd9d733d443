"""MAML math: second-order meta-gradient vs finite differences, FOMAML, vmap vs loop."""

import pytest
import torch
from torch.func import functional_call

from helpers import agent_tasks
from flower_difmaml.meta import TaskBatch, adapt, evaluate_after_adaptation, meta_gradient, meta_gradient_loop
from flower_difmaml.meta.maml import mse_loss
from flower_difmaml.models import MLP, Conv4, initial_parameters
from flower_difmaml.tasks.sinusoid import SinusoidTasks


def _tiny_problem(num_tasks: int = 3, seed: int = 0) -> tuple[torch.nn.Module, dict, TaskBatch]:
    model = MLP((1, 4, 1)).double()
    params = initial_parameters(model, seed)
    batch = agent_tasks(SinusoidTasks(shots=5, queries=7).sample, num_tasks, seed=seed)
    return model, params, batch


def _objective(model, params, batch, inner_lr, inner_steps) -> torch.Tensor:
    _, loss = meta_gradient(model, params, batch, inner_lr=inner_lr, inner_steps=inner_steps)
    return loss


@pytest.mark.parametrize("inner_steps", [1, 2])
def test_second_order_gradient_matches_central_finite_differences(inner_steps: int) -> None:
    model, params, batch = _tiny_problem()
    inner_lr = 0.3  # large, so second-order terms matter
    grads, _ = meta_gradient(model, params, batch, inner_lr=inner_lr, inner_steps=inner_steps)
    h = 1e-6
    for name, p in params.items():
        numeric = torch.zeros_like(p)
        for i in range(p.numel()):
            plus = {n: q.clone() for n, q in params.items()}
            minus = {n: q.clone() for n, q in params.items()}
            plus[name].view(-1)[i] += h
            minus[name].view(-1)[i] -= h
            numeric.view(-1)[i] = (
                _objective(model, plus, batch, inner_lr, inner_steps)
                - _objective(model, minus, batch, inner_lr, inner_steps)
            ) / (2 * h)
        torch.testing.assert_close(grads[name], numeric, rtol=1e-4, atol=1e-8)


def test_first_order_equals_query_gradient_at_adapted_parameters() -> None:
    model, params, batch = _tiny_problem()
    inner_lr = 0.3
    grads, _ = meta_gradient(model, params, batch, inner_lr=inner_lr, inner_steps=2, first_order=True)
    expected = {n: torch.zeros_like(p) for n, p in params.items()}
    for t in range(batch.num_tasks):
        theta = adapt(model, params, batch.x_support[t], batch.y_support[t], inner_lr=inner_lr, inner_steps=2)
        theta = {n: p.detach().requires_grad_(True) for n, p in theta.items()}
        loss = mse_loss(functional_call(model, theta, (batch.x_query[t],)), batch.y_query[t])
        for n, g in zip(theta, torch.autograd.grad(loss, list(theta.values()))):
            expected[n] += g / batch.num_tasks
    for n in params:
        torch.testing.assert_close(grads[n], expected[n], rtol=1e-10, atol=1e-12)


def test_first_and_second_order_differ() -> None:
    model, params, batch = _tiny_problem()
    second, _ = meta_gradient(model, params, batch, inner_lr=0.3)
    first, _ = meta_gradient(model, params, batch, inner_lr=0.3, first_order=True)
    assert max((second[n] - first[n]).abs().max().item() for n in params) > 1e-4


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("inner_steps", [1, 3])
def test_vmap_over_tasks_equals_the_loop(first_order: bool, inner_steps: int) -> None:
    family = SinusoidTasks()
    model = family.make_model()
    params = initial_parameters(model, 1)
    batch = agent_tasks(family.sample, 10, seed=1, round_=5)
    kwargs = dict(inner_lr=0.01, inner_steps=inner_steps, first_order=first_order)
    grads, loss = meta_gradient(model, params, batch, **kwargs)
    loop_grads, loop_loss = meta_gradient_loop(model, params, batch, **kwargs)
    torch.testing.assert_close(loss, loop_loss, rtol=1e-12, atol=0)
    for n in params:
        torch.testing.assert_close(grads[n], loop_grads[n], rtol=1e-10, atol=1e-13)


def test_zero_inner_steps_is_plain_query_loss_gradient() -> None:
    model, params, batch = _tiny_problem()
    grads, loss = meta_gradient(model, params, batch, inner_lr=0.3, inner_steps=0)
    expected_loss = torch.stack(
        [mse_loss(functional_call(model, params, (batch.x_query[t],)), batch.y_query[t]) for t in range(3)]
    ).mean()
    torch.testing.assert_close(loss, expected_loss)


def test_meta_gradient_is_vmappable_over_agents() -> None:
    model, params, batch = _tiny_problem()
    _, params_b, batch_b = _tiny_problem(seed=1)
    stacked_params = {n: torch.stack([params[n], params_b[n]]) for n in params}
    stacked_batch = TaskBatch(*(torch.stack([a, b]) for a, b in zip(batch, batch_b)))
    grads, losses = torch.func.vmap(
        lambda p, b: meta_gradient(model, p, b, inner_lr=0.3, inner_steps=1)
    )(stacked_params, stacked_batch)
    for i, (p, b) in enumerate([(params, batch), (params_b, batch_b)]):
        g, loss = meta_gradient(model, p, b, inner_lr=0.3)
        torch.testing.assert_close(losses[i], loss)
        for n in p:
            torch.testing.assert_close(grads[n][i], g[n])


def test_evaluation_curve_starts_at_the_unadapted_loss_and_matches_manual_sgd() -> None:
    model, params, batch = _tiny_problem()
    curve = evaluate_after_adaptation(model, params, batch, inner_lr=0.1, steps=range(4))["loss"]
    assert curve.shape == (4,)
    subset = evaluate_after_adaptation(model, params, batch, inner_lr=0.1, steps=(0, 3))["loss"]
    torch.testing.assert_close(subset, curve[[0, 3]])
    both = evaluate_after_adaptation(
        model, params, batch, inner_lr=0.1, steps=(0, 3),
        metrics=lambda prediction, target: {"mse": mse_loss(prediction, target), "mae": (prediction - target).abs().mean()},
    )
    assert set(both) == {"mse", "mae"} and both["mae"].shape == (2,)
    torch.testing.assert_close(both["mse"], subset)
    losses = []
    for t in range(batch.num_tasks):
        theta = adapt(model, params, batch.x_support[t], batch.y_support[t], inner_lr=0.1, inner_steps=3)
        losses.append(mse_loss(functional_call(model, theta, (batch.x_query[t],)), batch.y_query[t]))
        unadapted = mse_loss(functional_call(model, params, (batch.x_query[t],)), batch.y_query[t])
        losses[-1] = (unadapted, losses[-1])
    torch.testing.assert_close(curve[0], torch.stack([u for u, _ in losses]).mean())
    torch.testing.assert_close(curve[3], torch.stack([a for _, a in losses]).mean())
    assert not curve.requires_grad


def test_conv4_meta_gradient_runs_under_vmap() -> None:
    model = Conv4(in_channels=1, num_classes=3, filters=4, image_size=28).double()
    params = initial_parameters(model, 0)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 1, 28, 28, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (2, 6), generator=gen)
    batch = TaskBatch(x, y, x, y)
    cross_entropy = torch.nn.functional.cross_entropy
    grads, loss = meta_gradient(model, params, batch, inner_lr=0.1, loss_fn=cross_entropy)
    loop_grads, loop_loss = meta_gradient_loop(model, params, batch, inner_lr=0.1, loss_fn=cross_entropy)
    torch.testing.assert_close(loss, loop_loss)
    for n in params:
        torch.testing.assert_close(grads[n], loop_grads[n])
    # Batch statistics cancel a conv bias exactly: its meta-gradient (second order too) is zero.
    assert grads["features.0.bias"].abs().max() < 1e-12
