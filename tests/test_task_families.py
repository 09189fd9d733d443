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
    with pytest.raises(ConfigError, match=r"^heterogeneity: unknown 'phase'; allowed: auto, none, slope$"):
        RunConfig(task=readme_family, heterogeneity="phase")


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


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ("task='omniglot' heterogeneity='alphabet' data-dir='{tmp}/nothing'", "error: data-dir: no Omniglot in"),
        ("task='digits' heterogeneity='classes' n-way=30", "error: n-way: 30 above the 28 classes"),
        ("task='digits' heterogeneity='none' shots=100 queries=100", "error: shots: shots + queries = 200 above the 174"),
    ],
)
def test_check_refuses_what_the_data_cannot_give(
    overrides: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from flower_difmaml.cli import main

    results = tmp_path / "results"
    code = main(["check", "--num-agents", "6", "-c", f"{overrides.format(tmp=tmp_path)} results-dir='{results}'"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(message) and "\n" not in err
    assert not results.exists()


def test_a_family_whose_metrics_differ_from_its_names_is_refused(readme_family: str, tmp_path: Path) -> None:
    import my_tasks

    from flower_difmaml.runner.experiment import set_up_run

    class Misnamed(my_tasks.LineTasks):
        metric_names = ("rmse",)

    my_tasks.Misnamed = Misnamed
    with pytest.raises(ConfigError, match=r"^task: 'my_tasks:Misnamed' metrics\(\) gives \['mse'\] but its metric_names"):
        set_up_run(RunConfig(task="my_tasks:Misnamed", heterogeneity="none", results_dir=str(tmp_path)), 4)


def test_an_omniglot_run_end_to_end_on_data_in_its_folder_layout(tmp_path: Path) -> None:
    from test_image_tasks import CHARACTERS, write_omniglot

    data = write_omniglot(tmp_path / "data")
    config = RunConfig(
        task="omniglot", data_dir=str(data), heterogeneity="alphabet", meta_train_characters=CHARACTERS - 6,
        n_way=3, shots=1, queries=1, tasks_per_agent=2, filters=4, inner_lr=0.4, num_rounds=2, eval_every=1,
        eval_tasks=2, eval_inner_steps=2, topology="complete", results_dir=str(tmp_path / "runs"), run_name="o",
    )
    summary = run_vectorized(config, 2, progress=lambda line: None)
    assert {"full-acc-0", "full-acc-1", "full-acc-2", "own-acc-2", "full-loss-2"} <= set(summary["final"])
    assert (tmp_path / "runs" / "o" / "acc.png").exists() and (tmp_path / "runs" / "o" / "loss.png").exists()


def test_a_default_a_family_refuses_is_said_to_be_the_default(readme_family: str, tmp_path: Path) -> None:
    import my_tasks

    from flower_difmaml.runner.experiment import set_up_run

    class FewShots(my_tasks.LineTasks):
        @classmethod
        def from_config(cls, config, num_agents):
            if config.shots > 5:
                raise ConfigError(f"shots: {config.shots} out of range; allowed: <= 5 for this family")
            return super().from_config(config, num_agents)

    my_tasks.FewShots = FewShots
    config = RunConfig(task="my_tasks:FewShots", heterogeneity="none", topology="ring", results_dir=str(tmp_path))
    with pytest.raises(ConfigError, match=r"^shots: 10 out of range; allowed: <= 5 for this family \(shots = 10 is the run "
                                          r"config's default, not a value of task 'my_tasks:FewShots': set shots for this task\)$"):
        set_up_run(config, 4)
    with pytest.raises(ConfigError, match=r"^shots: 7 out of range; allowed: <= 5 for this family$"):  # set by the user
        set_up_run(config.replace(shots=7), 4)
    set_up_run(config.replace(shots=5), 4)
