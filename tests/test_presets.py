"""The presets (presets/*.toml): each passes `check` and runs two rounds; run-config files as -c."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from test_image_tasks import write_omniglot

from flower_difmaml.cli import main, read_run_config
from flower_difmaml.config import ConfigError, RunConfig

PRESETS = sorted((Path(__file__).parent.parent / "presets").glob("*.toml"))
SHORT = "num-rounds=2 eval-every=1 eval-tasks=2 final-eval-tasks=2"


@pytest.fixture(scope="module")
def omniglot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A made Omniglot of 80 characters (the preset's 1400 meta-train characters cannot be had offline)."""
    return write_omniglot(tmp_path_factory.mktemp("omniglot"), {"images_background": (20, 20), "images_evaluation": (20, 20)})


def test_every_preset_says_what_it_reproduces_and_how_long_it_takes() -> None:
    assert {p.name for p in PRESETS} >= {"default.toml", "difmaml-sinusoid.toml", "difmaml-omniglot.toml", "digits.toml",
                                         "learned-graph-linear-regression.toml", "byzantine.toml"}
    for preset in PRESETS:
        text = preset.read_text()
        assert text.startswith("# "), preset
        assert re.search(r"^# Here \(2 cores\): .*\d+ (s|min)", text, re.M), preset
        RunConfig.from_mapping({**RunConfig().to_mapping(), **read_run_config([str(preset)])})  # valid keys


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_each_preset_passes_check_and_runs_two_rounds(preset: Path, tmp_path: Path, omniglot_dir: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    data = f"data-dir='{omniglot_dir}' meta-train-characters=40" if "omniglot" in preset.name else ""
    keys = ["-c", str(preset), "-c", f"results-dir='{tmp_path}' run-name='p' {data}"]
    assert main(["check", *keys]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("ok: ")
    assert main(["run", *keys[:-1], f"{keys[-1]} {SHORT}"]) == 0
    summary = json.loads((tmp_path / "p" / "summary.json").read_text())
    saved = json.loads((tmp_path / "p" / "config.json").read_text())
    preset_keys = read_run_config([str(preset)])
    assert {k: saved[k] for k in preset_keys if k not in ("num-rounds", "eval-every", "eval-tasks", "meta-train-characters")} == {
        k: v for k, v in preset_keys.items() if k not in ("num-rounds", "eval-every", "eval-tasks", "meta-train-characters")}
    assert summary["final-round"] == 2 and summary["num-agents"] == preset_keys["num-agents"]


def test_run_config_files_and_texts_combine_in_order_and_bad_files_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text("num-rounds = 7\nstrategy = 'non-coop'\n")
    assert read_run_config([str(tmp_path / "a.toml"), "num-rounds=9"]) == {"num-rounds": 9, "strategy": "non-coop"}
    assert read_run_config(["num-rounds=9", str(tmp_path / "a.toml")]) == {"num-rounds": 7, "strategy": "non-coop"}
    (tmp_path / "table.toml").write_text("[tool]\nx = 1\n")
    (tmp_path / "bad.toml").write_text("num-rounds = = 3\n")
    for name, message in {"missing.toml": "run-config: cannot read .*missing.toml: No such file",
                          "table.toml": r"run-config: .*table.toml has a table \[tool\]; allowed: flat key = value lines",
                          "bad.toml": "run-config: .*bad.toml is not TOML"}.items():
        with pytest.raises(ConfigError, match=message):
            read_run_config([str(tmp_path / name)])
