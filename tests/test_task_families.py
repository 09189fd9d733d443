"""Task families: the README's own-family example runs as it stands; what a family must have."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from flower_difmaml.config import ConfigError, RunConfig
from flower_difmaml.runner.vectorized import run_vectorized

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture()
def readme_family(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The README's "Add your own task family" example, written out as my_tasks.py and importable."""
    section = README.read_text().split("## Add your own task family", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    (tmp_path / "my_tasks.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_tasks:LineTasks"
    sys.modules.pop("my_tasks", None)


def test_the_readme_family_learns(readme_family: str, tmp_path: Path) -> None:
    config = RunConfig(
        task=readme_family, heterogeneity="slope", num_rounds=200, eval_every=100, eval_tasks=20, tasks_per_agent=5,
        inner_lr=0.1, meta_lr=0.1, topology="ring", results_dir=str(tmp_path / "runs"), run_name="line",
    )
    summary = run_vectorized(config, 4, progress=lambda line: None)
    final = summary["final"]
    assert {"full-mse-0", "full-mse-1", "full-mse-10", "own-mse-1", "disagreement"} <= set(final)
    first = json.loads((tmp_path / "runs" / "line" / "metrics.jsonl").read_text().splitlines()[0])
    assert final["full-mse-1"] < 0.5 * first["full-mse-1"]


def test_a_family_that_understands_no_such_heterogeneity_is_refused(readme_family: str) -> None:
    with pytest.raises(ConfigError, match=r"^heterogeneity: unknown 'phase'; allowed: none, slope$"):
        RunConfig(task=readme_family)


def test_a_family_without_metrics_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "half_tasks.py").write_text("class Half:\n    HETEROGENEITY = ('none',)\n    DEFAULT_DTYPE = None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"^task: 'half_tasks:Half' lacks metric_names, from_config, make_model"):
        RunConfig(task="half_tasks:Half", heterogeneity="none")


def test_a_module_that_cannot_be_imported_is_named() -> None:
    with pytest.raises(ConfigError, match=r"^task: cannot import 'no_such_package.tasks' \(ModuleNotFoundError"):
        RunConfig(task="no_such_package.tasks:Family")


def test_digits_meta_learning_makes_one_step_adaptation_work_on_unseen_digits(tmp_path: Path) -> None:
    """Fast adaptation is the signal: 10 fine-tuning steps from a random Conv-4 already reach
    ~0.75 on 5-way 1-shot digits; one step from the untrained model does not."""
    config = RunConfig(
        task="digits", heterogeneity="classes", topology="ring", n_way=5, shots=1, queries=5, tasks_per_agent=4,
        inner_lr=0.4, filters=8, meta_optimizer="adam", meta_lr=0.01, num_rounds=40, eval_every=40,
        eval_tasks=25, eval_inner_steps=2, results_dir=str(tmp_path), run_name="digits",
    )
    summary = run_vectorized(config, 4, progress=lambda line: None)
    untrained = json.loads((tmp_path / "digits" / "metrics.jsonl").read_text().splitlines()[0])
    assert summary["final"]["full-acc-1"] > untrained["full-acc-1"] + 0.15  # meta-test digits 7, 8, 9
    assert summary["final"]["full-acc-1"] > summary["final"]["full-acc-0"] + 0.2
