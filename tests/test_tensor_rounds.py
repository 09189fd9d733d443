"""Tensor-native rounds of the vectorised engine: models and the combination stay in tensors on
the agents' device (on a GPU by default; forced here on the CPU), and a run gives the numbers
of the numpy rounds (float64, to round-off)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from flower_difmaml.agent_models import AgentModels, as_rows_of, index_for, on_host
from flower_difmaml.block import AgentBlock, TrainReplies, TrainRequest
from flower_difmaml.config import RunConfig
from flower_difmaml.learner import MetaLearner
from flower_difmaml.network.combination import DENSE_PRODUCT_DENSITY, combine, weighted_mean
from flower_difmaml.runner.rounds import checked
from flower_difmaml.runner.vectorized import run_vectorized

TINY = dict(num_rounds=4, eval_every=2, eval_tasks=3, final_eval_tasks=0, tasks_per_agent=2, shots=4, queries=4,
            topology="ring", meta_optimizer="adam", meta_lr=0.01)
CONFIGS = {  # (keys, agents)
    "dif-maml-atc": (dict(topology="erdos-renyi"), 6),
    "dif-maml-cta": (dict(diffusion_order="cta"), 6),
    "dif-maml-faults": (dict(fail_prob=0.3, topology="erdos-renyi"), 6),
    "dif-maml-links-drop": (dict(link_drop_prob=0.3, topology="erdos-renyi"), 6),
    "dif-maml-byzantine": (dict(byzantine="1", attack="gaussian"), 6),
    "dif-maml-sparse-product": (dict(), 70),  # ring of 70: density 3/70 < DENSE_PRODUCT_DENSITY
    "fedavg-maml": (dict(strategy="fedavg-maml", participation=0.5), 6),
    "non-coop": (dict(strategy="non-coop"), 6),
}


def _lines(run_dir: Path) -> list[dict]:
    return [
        {k: v for k, v in json.loads(line).items() if k not in ("wall-seconds", "agent-seconds")}
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
    ]


def _approx(value):
    """Floats, also in per-agent lists and dicts, to float64 round-off; the rest exactly."""
    if isinstance(value, dict):
        return {k: _approx(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_approx(v) for v in value]
    return pytest.approx(value, rel=1e-10, abs=1e-12) if isinstance(value, float) else value


def _assert_same_run(a: Path, b: Path) -> None:
    for line_a, line_b in zip(_lines(a), _lines(b), strict=True):
        assert line_a.keys() == line_b.keys()
        for key, value in line_a.items():
            assert line_b[key] == _approx(value), key
    np.testing.assert_allclose(np.load(b / "models.npy"), np.load(a / "models.npy"), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_tensor_rounds_give_the_numpy_rounds_numbers(tmp_path: Path, name: str) -> None:
    keys, agents = CONFIGS[name]
    config = RunConfig(results_dir=str(tmp_path), **{**TINY, **keys})
    assert name != "dif-maml-sparse-product" or 3 / agents < DENSE_PRODUCT_DENSITY
    for tensor_rounds in (False, True):
        run_vectorized(config.replace(run_name=str(tensor_rounds)), agents, progress=lambda line: None,
                       tensor_rounds=tensor_rounds)
        assert json.loads((tmp_path / str(tensor_rounds) / "config.json").read_text())["tensor-rounds"] is tensor_rounds
    _assert_same_run(tmp_path / "False", tmp_path / "True")
    models = np.load(tmp_path / "True" / "models.npy")
    assert name == "fedavg-maml" or np.ptp(models, axis=0).max() > 0  # the agents' models differ: a real comparison


@pytest.mark.parametrize("keys", [dict(aggregation="resilient"), dict(aggregation="median"), dict(strategy="learned-graph", graph_warmup=2)])
def test_rules_written_for_numpy_keep_numpy_rounds(tmp_path: Path, keys: dict) -> None:
    config = RunConfig(results_dir=str(tmp_path), run_name="run", **{**TINY, **keys})
    run_vectorized(config, 5, progress=lambda line: None, tensor_rounds=True)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["tensor-rounds"] is False


def test_a_block_on_the_device_replies_the_numpy_blocks_models_as_tensors() -> None:
    learner = MetaLearner.from_config(RunConfig(**TINY), 4)
    start = np.tile(learner.initial_vector(), (4, 1))
    on_host_replies = AgentBlock(learner, range(4)).train(TrainRequest(1, AgentModels(range(4), start)))
    on_device = AgentBlock(learner, range(4), on_device=True)
    replies = on_device.train(TrainRequest(1, AgentModels(range(4), torch.from_numpy(start))))
    assert isinstance(replies.models.rows, torch.Tensor) and isinstance(on_host_replies.models.rows, np.ndarray)
    np.testing.assert_array_equal(on_host(replies.models.rows), on_host_replies.models.rows)
    assert replies.losses == on_host_replies.losses


def test_combination_and_mean_of_tensors_equal_numpys() -> None:
    rng = np.random.default_rng(0)
    phi = rng.normal(size=(80, 7))
    for density in (0.5, 0.02):  # a dense and a sparse product
        A = sp.random_array((80, 80), density=density, rng=rng, format="csc") + sp.eye_array(80, format="csc")
        A = sp.csc_array(A / A.sum(axis=0))
        np.testing.assert_allclose(on_host(combine(A, torch.from_numpy(phi))), combine(A, phi), rtol=1e-13, atol=1e-15)
    models, tasks = AgentModels([3, 0, 5], phi[:3]), {3: 2, 0: 1, 5: 4}
    tensors = AgentModels([3, 0, 5], torch.from_numpy(phi[:3]).float())
    np.testing.assert_allclose(on_host(weighted_mean(tensors, tasks)), weighted_mean(AgentModels(models.ids, phi[:3].astype(np.float32)), tasks), rtol=1e-6)
    assert weighted_mean(tensors, tasks).dtype == torch.float32


def test_row_helpers_keep_the_kind_and_copy() -> None:
    rows = np.arange(6.0).reshape(3, 2)
    tensor = as_rows_of(rows, torch.zeros(1, 2, dtype=torch.float32))
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32
    back = as_rows_of(tensor, rows)
    assert isinstance(back, np.ndarray) and back.dtype == np.float64
    back[0] = -1.0
    assert tensor[0, 0] == 0.0  # a copy
    mask = np.array([True, False, True])
    torch.testing.assert_close(tensor[index_for(mask, tensor)], torch.tensor([[0.0, 1.0], [4.0, 5.0]]))
    ascending = AgentModels([2, 0, 1], tensor).ascending()
    assert ascending.ids.tolist() == [0, 1, 2] and ascending[2].tolist() == [0.0, 1.0]


def test_a_tensor_reply_with_nan_is_rejected_and_the_others_stay_tensors() -> None:
    rows = torch.zeros(3, 4, dtype=torch.float64)
    rows[1, 2] = float("nan")
    replies = TrainReplies(AgentModels([0, 1, 2], rows), dict.fromkeys(range(3), 2), dict.fromkeys(range(3), 0.5), 0.0)
    kept = checked(replies, 4, np.dtype(np.float64))
    assert kept.failed == {1: "reply rejected: model has NaN or Inf entries"}
    assert list(kept.models) == [0, 2] and isinstance(kept.models.rows, torch.Tensor)
    assert checked(replies, 5, np.dtype(np.float64)).failed[0] == "reply rejected: model shape (4,), expected (5,)"
    assert checked(replies, 4, np.dtype(np.float32)).failed[2] == "reply rejected: model dtype float64, expected float32"
