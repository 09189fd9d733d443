"""Strategies found by name: Flower's own (``flwr:<Class>``), a user's (``module:Class``, the
README's example as it stands), the built-ins; the ClientApp in Flower's own dialect."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from flower_difmaml import client_app
from flower_difmaml.block import AgentBlock, TrainRequest
from flower_difmaml.cli import main
from flower_difmaml.config import ConfigError, RunConfig
from flower_difmaml.flower import codec
from flower_difmaml.learner import MetaLearner
from flower_difmaml.runner.experiment import set_up_run
from flower_difmaml.runner.results import read_metrics
from flower_difmaml.runner.vectorized import run_vectorized
from flower_difmaml.strategies import parse_strategy_args

README = Path(__file__).resolve().parents[1] / "README.md"
SMALL = dict(num_rounds=6, eval_every=3, eval_tasks=5, final_eval_tasks=0, tasks_per_agent=3, shots=5, queries=5, topology="complete")


def _run(root: Path, name: str, num_agents: int = 6, **keys) -> dict:
    config = RunConfig(results_dir=str(root), run_name=name, **{**SMALL, **keys})
    return run_vectorized(config, num_agents, progress=lambda line: None)


def _readme_code(name: str) -> str:
    """The README's python block that starts with ``# <name>``."""
    return re.search(rf"```python\n(# {re.escape(name)}\n.*?)```", README.read_text(), re.S).group(1)


def test_strategy_args_are_name_value_pairs() -> None:
    assert parse_strategy_args("eta=0.01, beta-1=0.9 , num_malicious_nodes=2, flag=true, rule=median, s='x'") == {
        "eta": 0.01, "beta_1": 0.9, "num_malicious_nodes": 2, "flag": True, "rule": "median", "s": "x",
    }
    assert parse_strategy_args("") == {}
    with pytest.raises(ConfigError, match=r"^strategy-args: 'eta' is not name=value"):
        parse_strategy_args("eta")


def test_flower_fedavg_gives_fedavg_mamls_numbers(tmp_path: Path) -> None:
    ours = _run(tmp_path, "ours", strategy="fedavg-maml", meta_optimizer="adam", meta_lr=0.003)
    stock = _run(tmp_path, "stock", strategy="flwr:FedAvg", meta_optimizer="adam", meta_lr=0.003)
    for key, value in ours["final"].items():
        assert stock["final"][key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
    np.testing.assert_allclose(np.load(tmp_path / "stock" / "models.npy"), np.load(tmp_path / "ours" / "models.npy"),
                               rtol=0, atol=1e-13)
    lines = read_metrics(tmp_path / "stock")
    assert [line["round"] for line in lines] == list(range(7)) and "agents" in lines[-1]  # per-agent metrics
    assert (tmp_path / "stock" / "mse.png").is_file()
    assert json.loads((tmp_path / "stock" / "config.json").read_text())["strategy"] == "flwr:FedAvg"


def test_a_flower_strategys_state_is_checkpointed_and_resumed(tmp_path: Path) -> None:
    keys = dict(strategy="flwr:FedAdam", strategy_args="eta=0.01", checkpoint_every=3)
    whole = _run(tmp_path, "whole", **keys)
    _run(tmp_path, "half", **{**keys, "num_rounds": 3})
    resumed = _run(tmp_path, "resumed", **keys, resume_from=str(tmp_path / "half"))
    assert resumed["final"] == whole["final"]  # FedAdam's moments went on from the checkpoint
    assert whole["final"] != _run(tmp_path, "fresh-moments", strategy="flwr:FedAdam", strategy_args="eta=0.02")["final"]


def test_sampling_flower_strategies_are_seeded_and_leave_pythons_random_alone(tmp_path: Path) -> None:
    random.seed(1234)
    expected = random.random()
    random.seed(1234)
    keys = dict(strategy="flwr:FedAvg", strategy_args="fraction_train=0.5, min_train_nodes=2")
    first = _run(tmp_path, "first", **keys)
    assert random.random() == expected
    assert _run(tmp_path, "second", **keys)["final"] == first["final"]
    assert {line["replies"] for line in read_metrics(tmp_path / "first")[1:]} == {3}


def test_robust_flower_strategies_run_under_attack(tmp_path: Path) -> None:
    attack = dict(byzantine="1", attack="gaussian", num_rounds=4, eval_every=4)
    krum = _run(tmp_path, "krum", strategy="flwr:Krum", strategy_args="num-malicious-nodes=1", **attack)
    mean = _run(tmp_path, "mean", strategy="flwr:FedAvg", **attack)
    assert mean["final"]["full-mse-1"] > 1.3 * krum["final"]["full-mse-1"]  # 7.66 and 5.05 when written
    assert "byzantine-full-mse-1" in read_metrics(tmp_path / "krum")[-1]


@pytest.mark.parametrize(
    "keys, message",
    [
        (dict(strategy="fedavg"), r"^strategy: unknown 'fedavg' \(did you mean 'fedavg-maml'\?\); allowed: dif-maml, fedavg-maml, non-coop, learned-graph, "),
        (dict(strategy="flwr:FedFoo"), r"^strategy: unknown 'flwr:FedFoo' \(did you mean .*'flwr:FedAvg'.*\?\); allowed: .*flwr:FedAvg, .*flwr:Krum"),
        (dict(strategy="flwr:FedAdam", strategy_args="etta=0.1"),
         r"^strategy-args: flwr:FedAdam takes no argument 'etta' \(did you mean 'eta'\?\); allowed: fraction_train, .*eta, eta_l, beta_1"),
        (dict(strategy="flwr:FedTrimmedAvg", strategy_args="beta=0.7"), r"^strategy-args: flwr:FedTrimmedAvg refuses .*beta"),
        (dict(strategy="flwr:FedAvg", strategy_args="min_available_nodes=9"), r"^strategy-args: flwr:FedAvg waits for 9 nodes"),
        (dict(strategy="flwr:Bulyan", strategy_args="num_malicious_nodes=1"), r"^strategy-args: flwr:Bulyan needs .* = 7 "),
        (dict(strategy="dif-maml", strategy_args="beta=1"), r"^strategy-args: .*'beta'.*allowed: none \(a built-in's settings"),
        (dict(strategy="no_such_module:Rule"), r"^strategy: cannot import 'no_such_module'"),
        (dict(strategy="json:NoSuchClass"), r"^strategy: 'json' has no class or function 'NoSuchClass'"),
        (dict(strategy="builtins:repr"), r"^strategy: 'builtins:repr' gave a str; it must return a MetaStrategy"),
    ],
)
def test_a_strategy_that_cannot_be_built_is_one_line_naming_the_key(tmp_path: Path, keys: dict, message: str) -> None:
    config = RunConfig(results_dir=str(tmp_path / "runs"), **{**SMALL, **keys})
    with pytest.raises(ConfigError, match=message) as error:
        set_up_run(config, 6)
    assert "\n" not in str(error.value) and not (tmp_path / "runs").exists()


def test_the_readme_strategy_runs_exactly_as_printed(tmp_path: Path) -> None:
    (tmp_path / "my_strategies.py").write_text(_readme_code("my_strategies.py"))
    command = re.search(r"```bash\n(PYTHONPATH=\. flower-difmaml run -c \"strategy='my_strategies:.*)\n```",
                        README.read_text()).group(1)
    env = {**os.environ, "HOME": str(tmp_path), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (run_dir,) = (tmp_path / "flower-difmaml-results").iterdir()
    assert run_dir.name.startswith("my_strategies-PullToMean-seed0-")
    lines = read_metrics(run_dir)
    assert lines[-1]["round"] == 100 and lines[-1]["full-mse-1"] < lines[0]["full-mse-1"]
    assert 0 < lines[-1]["disagreement"] < 1  # pulled together, not one model


def test_a_task_switch_needs_no_other_key(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["check", "-c", "task='digits'"]) == 0
    assert "ok: dif-maml on 10 agents, digits tasks" in capsys.readouterr().out
    assert main(["check", "-c", "task='linear-regression'"]) == 0
    root = tmp_path / "runs"
    assert main(["run", "-c", f"task='digits' num-rounds=1 eval-tasks=1 final-eval-tasks=0 filters=8 results-dir='{root}'"]) == 0
    (run_dir,) = root.iterdir()
    assert "full-acc-10" in json.loads((run_dir / "summary.json").read_text())["final"]


# ---- the ClientApp in Flower's dialect ------------------------------------------------------

@pytest.fixture()
def node(monkeypatch: pytest.MonkeyPatch) -> Context:
    """Node 0 of 2 of a run of 6 agents (it hosts agents 0..2), and a task identity for messages."""
    for name in ("_run_id", "_node_id", "_task_id"):
        monkeypatch.setattr(TaskIdentity, name, 0)
    config = RunConfig(num_agents=6, **SMALL)
    return Context(run_id=0, node_id=1, node_config={"partition-id": 0, "num-partitions": 2}, state=RecordDict(),
                   run_config=config.to_mapping())


def _message(content: RecordDict, kind: str = MessageType.TRAIN) -> Message:
    return Message(content, dst_node_id=1, message_type=kind)


def test_a_flower_train_message_gets_the_nodes_mean_model(node: Context) -> None:
    arrays = codec.initial_arrays(node.run_config)
    reply = client_app.train(_message(RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": 4})})), node)
    assert not reply.has_error() and set(reply.content) == {"arrays", "metrics"}
    metrics = reply.content["metrics"]
    assert metrics["num-examples"] == 3 * SMALL["tasks_per_agent"] and metrics["train-loss"] > 0
    learner = MetaLearner.from_config(RunConfig.from_mapping(node.run_config), 6)
    replies = AgentBlock(learner, range(3)).train(TrainRequest(4, dict.fromkeys(range(3), learner.initial_vector())))
    mean = np.mean([replies.models[k] for k in range(3)], axis=0)
    got = np.concatenate([reply.content["arrays"][n].numpy().ravel() for n in learner.layout.names])
    np.testing.assert_allclose(got, mean, rtol=0, atol=1e-15)
    assert list(reply.content["arrays"]) == list(arrays)  # the model's tensors, by name


def test_a_flower_evaluate_message_gets_the_familys_metrics(node: Context) -> None:
    content = RecordDict({"arrays": codec.initial_arrays(node.run_config), "config": ConfigRecord({"server-round": 1})})
    reply = client_app.evaluate(_message(content, MessageType.EVALUATE), node)
    metrics = reply.content["metrics"]
    assert metrics["num-examples"] == 3 * SMALL["eval_tasks"]
    assert {"full-mse-0", "full-mse-1", "full-mse-10", "own-mse-0", "own-mse-1", "own-mse-10"} <= set(metrics)


def _with(arrays: ArrayRecord, **changes) -> ArrayRecord:
    out = ArrayRecord({name: array for name, array in arrays.items()})
    for name, value in changes.items():
        out[name.replace("_", ".")] = ArrayRecord([value])["0"]
    return out


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda arrays: RecordDict({"config": ConfigRecord({"server-round": 1})}),
         "message has no record 'arrays' (a Flower strategy's model) nor 'models' (flower-difmaml's)"),
        (lambda arrays: RecordDict({"arrays": ArrayRecord(), "config": ConfigRecord({"server-round": 1})}),
         "record 'arrays' has no key '0.weight'"),
        (lambda arrays: RecordDict({"arrays": _with(arrays, **{"2_bias": np.zeros(3)}), "config": ConfigRecord({"server-round": 1})}),
         "record 'arrays': '2.bias' has shape (3,), expected (40,)"),
        (lambda arrays: RecordDict({"arrays": arrays, "config": ConfigRecord({"round": 1})}),
         "record 'config' has no key 'server-round'"),
    ],
)
def test_a_message_the_node_cannot_read_gets_a_one_line_error_reply(node: Context, make, reason: str) -> None:
    reply = client_app.train(_message(make(codec.initial_arrays(node.run_config))), node)
    assert reply.has_error() and reply.error.reason == f"flower-difmaml: {reason}"


@pytest.mark.slow
def test_the_readme_plain_serverapp_drives_the_clientapp_with_flowers_fedavg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The README's plain ServerApp (Flower's stock FedAvg) on 8 agents hosted by 4 SuperNodes, as
    it stands; its numbers are fedavg-maml's (Flower's weighted mean of the nodes' means is the
    mean over the agents)."""
    (tmp_path / "my_server.py").write_text(_readme_code("my_server.py"))
    monkeypatch.syspath_prepend(str(tmp_path))
    from my_server import app  # noqa: PLC0415 - the README's file, written just now

    from flower_difmaml.flower.simulation import run_flower_simulation

    config = RunConfig(results_dir=str(tmp_path / "runs"), **{**SMALL, "num_rounds": 3})
    run_flower_simulation(config, 8, app, client_app.app, num_nodes=4)
    printed = dict(re.findall(r"round (\d+): full-mse-1 ([0-9.]+) own-mse-1", capsys.readouterr().out))
    assert sorted(printed) == ["1", "2", "3"]
    # Flower's evaluate messages evaluate on eval-tasks; SMALL's last evaluation too (final-eval-tasks 0)
    ours = run_vectorized(config.replace(strategy="fedavg-maml", run_name="ours"), 8, progress=lambda line: None)
    assert float(printed["3"]) == pytest.approx(ours["final"]["full-mse-1"], abs=6e-5)  # printed to 4 decimals
    sys.modules.pop("my_server", None)
