"""The run config: defaults equal pyproject.toml's, every bad value names its key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from flower_difmaml.config import ConfigError, RunConfig

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_defaults_equal_pyproject_app_config() -> None:
    app_config = tomllib.loads(PYPROJECT.read_text())["tool"]["flwr"]["app"]["config"]
    assert app_config == RunConfig().to_mapping()


def test_pyproject_has_no_federations_table() -> None:
    assert "federations" not in tomllib.loads(PYPROJECT.read_text())["tool"]["flwr"]


def test_from_mapping_round_trips() -> None:
    config = RunConfig.from_mapping({"strategy": "fedavg-maml", "inner-lr": 0.05, "first-order": True})
    assert (config.strategy, config.inner_lr, config.first_order) == ("fedavg-maml", 0.05, True)
    assert RunConfig.from_mapping(config.to_mapping()) == config


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"topology": "mesh"}, "topology: unknown 'mesh'; allowed: ring"),
        ({"topology-p": 1.5}, r"topology-p: got 1.5; allowed: a number in \[0, 1\]"),
        ({"topology-radius": 0.0}, "topology-radius: got 0.0; allowed: a finite number > 0"),
        ({"topology-k": 3}, "topology-k: got 3; allowed: an even integer"),
        ({"topology": "file"}, "topology-file: required when topology = 'file'"),
        ({"combination": "average"}, "combination: unknown 'average'; allowed: metropolis, uniform"),
        ({"diffusion-order": "ca"}, r"diffusion-order: unknown 'ca' \(did you mean 'cta'\?\); allowed: atc, cta"),
        ({"num-rounds": 0}, "num-rounds: 0 out of range; allowed: >= 1"),
        ({"num-rounds": 2.5}, "num-rounds: 2.5 is not an integer"),
        ({"eval-every": -1}, "eval-every: -1 out of range"),
        ({"seed": "zero"}, "seed: 'zero' is not an integer"),
        ({"task": "mnist"}, "task: unknown 'mnist'; allowed: sinusoid, digits, omniglot, linear-regression, miniimagenet, image-folder, or 'package.module:ClassName'"),
        ({"task": "no_such_module:Tasks"}, "task: cannot import 'no_such_module' \\(ModuleNotFoundError"),
        ({"task": "flower_difmaml.models:MLP"}, "task: 'flower_difmaml.models:MLP' lacks HETEROGENEITY"),
        ({"task": "digits", "heterogeneity": "phase"}, "heterogeneity: unknown 'phase'; allowed: auto, none, classes"),
        ({"combination": "median"}, "combination: 'median' is now a value of key aggregation .aggregation='median'."),
        ({"aggregation": "krum"}, "aggregation: unknown 'krum'; allowed: weighted, median, trimmed-mean, resilient"),
        ({"dtype": "float16"}, r"dtype: unknown 'float16' \(did you mean 'float64' or 'float32'\?\); allowed: auto, float32, float64"),
        ({"n-way": 1}, "n-way: 1 out of range; allowed: >= 2"),
        ({"heterogeneity": "both"}, "heterogeneity: unknown 'both'; allowed: auto, none, amplitude, phase"),
        ({"tasks-per-agent": 0}, "tasks-per-agent: 0 out of range"),
        ({"shots": True}, "shots: True is not an integer"),
        ({"inner-lr": -0.1}, "inner-lr: -0.1 out of range; allowed: > 0.0"),
        ({"inner-steps": -1}, "inner-steps: -1 out of range; allowed: >= 0"),
        ({"first-order": "yes"}, "first-order: 'yes' is not a boolean"),
        ({"meta-optimizer": "rmsprop"}, "meta-optimizer: unknown 'rmsprop'; allowed: sgd, adam"),
        ({"meta-lr": 0}, "meta-lr: 0 out of range; allowed: > 0.0"),
        ({"participation": 1.2}, r"participation: 1.2 out of range; allowed: \(0.0, 1.0\]"),
        ({"run-name": "a/b"}, "run-name: 'a/b' must be a plain folder name"),
        ({"inner_lr": 0.1}, r"inner_lr: unknown key \(did you mean 'inner-lr'\?\); allowed: aggregation, attack, attack-scale, byzantine, byzantine-fraction, channels, checkpoint-every,"),
        ({"inner-lrr": 0.1}, r"inner-lrr: unknown key \(did you mean 'inner-lr' or 'eval-inner-lr'\?\); allowed: aggregation,"),
        ({"colour": "red"}, "colour: unknown key; allowed: aggregation,"),  # nothing near: no suggestion
        ({"meta-optimizer": "adamw"}, r"meta-optimizer: unknown 'adamw' \(did you mean 'adam'\?\); allowed: sgd, adam"),
        ({"topology": "rng"}, r"topology: unknown 'rng' \(did you mean 'ring'\?\); allowed: ring, complete,"),
        ({"task": "digit"}, r"task: unknown 'digit' \(did you mean 'digits'\?\); allowed: sinusoid, digits,"),
        ({"fail-prob": 1.0}, r"fail-prob: 1.0 out of range; allowed: \[0.0, 1.0\)"),
        ({"fail-prob": -0.1}, "fail-prob: -0.1 out of range"),
        ({"fail-prob": float("nan")}, "fail-prob: nan out of range"),
        ({"link-drop-prob": 1.5}, r"link-drop-prob: 1.5 out of range; allowed: \[0.0, 1.0\]"),
        ({"reply-timeout": 0}, "reply-timeout: 0 out of range; allowed: > 0.0"),
        ({"checkpoint-every": -5}, "checkpoint-every: -5 out of range; allowed: >= 0"),
        ({"checkpoint-every": "10"}, "checkpoint-every: '10' is not an integer"),
        ({"resume-from": 3}, "resume-from: 3 is not a string"),
    ],
)
def test_bad_values_name_the_key(mapping: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_mapping(mapping)


def test_integers_are_accepted_for_floats() -> None:
    assert RunConfig.from_mapping({"meta-lr": 1}).meta_lr == 1
