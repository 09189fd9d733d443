"""Key ``device``: its spelling, what it resolves to, and its errors before anything runs.

CI has no GPU: CUDA's presence is simulated here with monkeypatch where only the choice is
tested. The tests that compute on a GPU are marked ``cuda`` (deselected unless asked for:
``pytest -m cuda`` on a GPU machine).
"""

from __future__ import annotations

import json

from pathlib import Path

import numpy as np
import pytest
import torch

from flower_difmaml.config import ConfigError, RunConfig
from flower_difmaml.devices import check_device, resolve_device
from flower_difmaml.models import initial_parameters
from flower_difmaml.learner import MetaLearner, ParamLayout
from flower_difmaml.runner.experiment import set_up_run
from flower_difmaml.runner.vectorized import run_vectorized


def _cuda(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


@pytest.mark.parametrize("value", ["cpu", "cuda", "cuda:0", "cuda:12", "auto"])
def test_device_spellings_pass(value: str) -> None:
    check_device(value)
    assert RunConfig(device=value).device == value  # the config checks only the spelling


@pytest.mark.parametrize("value", ["gpu", "CUDA", "cuda:", "cuda:x", "cuda:-1", "mps", "", " cpu"])
def test_other_spellings_are_one_line_errors_naming_the_key(value: str) -> None:
    with pytest.raises(ConfigError) as error:
        RunConfig(device=value)
    message = str(error.value)
    assert message.startswith("device: ") and "allowed: cpu, cuda, cuda:N, auto" in message
    assert "\n" not in message


def test_without_cuda_auto_is_the_cpu_and_cuda_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _cuda(monkeypatch, 0)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    for value in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError, match=rf"^device: '{value}' asked for, but this machine has no CUDA device"):
            resolve_device(value)


def test_with_two_gpus_the_index_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    _cuda(monkeypatch, 2)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match=r"^device: 'cuda:2' out of range; this machine has cuda:0..cuda:1$"):
        resolve_device("cuda:2")


def test_a_run_asking_for_missing_cuda_stops_before_writing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _cuda(monkeypatch, 0)
    config = RunConfig(device="cuda", topology="ring", results_dir=str(tmp_path / "results"), num_rounds=2)
    with pytest.raises(ConfigError, match="^device: 'cuda' asked for"):
        run_vectorized(config, 4)
    assert not (tmp_path / "results").exists()
    set_up_run(config, 4, device="cpu")  # a ServerApp checks the rest on the CPU; its nodes check the device


def test_the_learner_computes_on_the_device_and_models_leave_as_numpy() -> None:
    learner = MetaLearner.from_config(RunConfig(device="cpu"), 3)
    assert learner.device == torch.device("cpu") and learner.layout.device == torch.device("cpu")
    params = learner.initial_parameters()
    assert all(p.device == learner.device for p in params.values())
    assert learner.train_batch(1, 5).x_support.device == learner.device
    vector = learner.initial_vector()
    assert isinstance(vector, np.ndarray) and vector.dtype == np.float64


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_vectors_round_trip_in_the_models_dtype(dtype: torch.dtype) -> None:
    params = {"w": torch.randn(3, 4, dtype=dtype), "b": torch.randn(4, dtype=dtype)}
    layout = ParamLayout.of(params)
    vector = layout.vector(params)
    assert vector.dtype == np.dtype(str(dtype).removeprefix("torch.")) and vector.shape == (16,)
    back = layout.params(vector)
    for name in params:
        assert back[name].dtype == dtype
        torch.testing.assert_close(back[name], params[name], rtol=0, atol=0)
    stacked = layout.params(np.stack([vector, 2 * vector]))  # leading (agent) dimensions kept
    torch.testing.assert_close(stacked["w"][1], 2 * params["w"], rtol=0, atol=0)


def test_initial_model_depends_on_the_seed_only() -> None:
    """Drawn with a forked CPU generator: neither the global state nor (on a GPU) the CUDA
    generator matters, so every device starts from one model; the global state is kept."""
    learner = MetaLearner.from_config(RunConfig(), 2)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first = learner.initial_vector()
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.manual_seed(7)
    np.testing.assert_array_equal(first, MetaLearner.from_config(RunConfig(), 2).initial_vector())
    assert not np.array_equal(first, MetaLearner.from_config(RunConfig(seed=1), 2).initial_vector())


CUDA_CONFIGS = {
    "sinusoid-float64": dict(
        topology="ring", num_rounds=20, eval_every=10, eval_tasks=5, tasks_per_agent=4, shots=5, queries=5,
    ),
    "sinusoid-adam-float64": dict(  # Adam's state stacked over agents on the GPU
        topology="ring", meta_optimizer="adam", meta_lr=0.001, num_rounds=20, eval_every=10, eval_tasks=5,
        tasks_per_agent=4, shots=5, queries=5,
    ),
    "digits-float32": dict(
        task="digits", heterogeneity="classes", topology="ring", n_way=3, shots=1, queries=2, tasks_per_agent=2, filters=8,
        inner_lr=0.4, eval_inner_steps=3, num_rounds=3, eval_every=3, eval_tasks=3, meta_lr=0.1,
    ),
}
CUDA_TOLERANCE = {"sinusoid-float64": 1e-9, "sinusoid-adam-float64": 1e-8, "digits-float32": 5e-3}  # relative, final metrics


@pytest.mark.cuda
@pytest.mark.parametrize("name", sorted(CUDA_CONFIGS))
def test_cuda_and_cpu_runs_of_one_config_agree(tmp_path: Path, name: str) -> None:
    summaries = {
        device: run_vectorized(
            RunConfig(device=device, results_dir=str(tmp_path), run_name=device, **CUDA_CONFIGS[name]), 4,
            progress=lambda line: None,
        )
        for device in ("cpu", "cuda")
    }
    cpu, cuda = summaries["cpu"]["final"], summaries["cuda"]["final"]
    assert json.loads((tmp_path / "cuda" / "config.json").read_text())["tensor-rounds"] is True  # models stayed on the GPU
    assert json.loads((tmp_path / "cpu" / "config.json").read_text())["tensor-rounds"] is False
    assert cpu.keys() == cuda.keys()
    for key in cpu:
        assert cuda[key] == pytest.approx(cpu[key], rel=CUDA_TOLERANCE[name], abs=1e-6), key


def test_a_one_layer_model_starts_from_the_seed_too() -> None:
    """The model itself is re-initialised when it has reset_parameters (an nn.Linear)."""
    first = initial_parameters(torch.nn.Linear(5, 1), 3)["weight"]
    torch.testing.assert_close(initial_parameters(torch.nn.Linear(5, 1), 3)["weight"], first, rtol=0, atol=0)
    assert not torch.equal(initial_parameters(torch.nn.Linear(5, 1), 4)["weight"], first)


def _launches(block, round_: int, models: dict) -> dict[str, int]:
    """CUDA runtime calls that launch work in one training round of ``block``: kernels, graphs."""
    from torch.profiler import ProfilerActivity, profile

    from flower_difmaml.block import TrainRequest

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        block.train(TrainRequest(round_, models))
        torch.cuda.synchronize()
    names = [event.name for event in prof.events()]
    return {kind: sum(kind in name for name in names) for kind in ("LaunchKernel", "GraphLaunch")}


@pytest.mark.cuda
def test_key_compile_on_a_gpu_replays_cuda_graphs_with_the_eager_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small N on a GPU is launch-bound; with key compile each step is one CUDA graph's replay
    (``block.step_function``): the eager run's numbers, chunks of one round alive together,
    no graph skipped, and a round launches fewer than half the eager round's kernels."""
    import flower_difmaml.block as block
    from torch._dynamo.utils import counters

    monkeypatch.setattr(block, "TRAIN_AGENTS_PER_CHUNK", 2)  # 5 agents: chunks of 2, 2 and 1
    config = RunConfig(device="cuda", results_dir=str(tmp_path), **CUDA_CONFIGS["sinusoid-adam-float64"])
    counters.clear()
    runs = {
        name: run_vectorized(config.replace(run_name=name, compile=name == "graphed"), 5, progress=lambda line: None)
        for name in ("eager", "graphed")
    }
    assert counters["inductor"]["cudagraph_skips"] == 0
    for key, value in runs["eager"]["final"].items():
        assert runs["graphed"]["final"][key] == pytest.approx(value, rel=1e-8, abs=1e-10), key
    models = {name: np.load(tmp_path / name / "models.npy") for name in runs}
    np.testing.assert_allclose(models["graphed"], models["eager"], rtol=0, atol=1e-9)

    monkeypatch.setattr(block, "TRAIN_AGENTS_PER_CHUNK", 256)
    launches = {}
    for name in ("eager", "graphed"):
        learner = MetaLearner.from_config(config.replace(compile=name == "graphed"), 10)
        agents = block.AgentBlock(learner, range(10), on_device=True)
        start = {k: learner.initial_vector() for k in range(10)}
        for round_ in (1, 2, 3):  # compiled, recorded, replayed
            agents.train(block.TrainRequest(round_, start))
        launches[name] = _launches(agents, 4, start)
    assert launches["graphed"]["GraphLaunch"] >= 1 and launches["eager"]["GraphLaunch"] == 0, launches
    # the task draws and the copies in and out of the graph stay launches
    assert launches["graphed"]["LaunchKernel"] < launches["eager"]["LaunchKernel"] / 2, launches
