"""MiniImageNet's three layouts and any folder of class folders, on tiny generated datasets:
splits, tasks, rotations, class windows, channels and sizes, the validation/test reporting, the
shared cache file, and every refusal (one line naming the key, nothing cached)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from flower_difmaml.cli import run_in_flower
from flower_difmaml.config import RunConfig
from flower_difmaml.errors import ConfigError
from flower_difmaml.learner import MetaLearner
from flower_difmaml.runner.vectorized import run_vectorized
from flower_difmaml.tasks.image_folder import ImageFolderTasks, load_image_folder
from flower_difmaml.tasks.image_store import CACHE_FOLDER
from flower_difmaml.tasks.miniimagenet import MiniImageNetTasks, load_miniimagenet

from helpers import agent_tasks

SPLITS = {"train": 6, "val": 3, "test": 3}  # classes per split
PER_CLASS = 5


def pixel_image(rng: np.random.Generator, size: int, mode: str) -> Image.Image:
    shape = (size, size) if mode == "L" else (size, size, 3)
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)


def class_folders(root: Path, size: int = 16, mode: str = "RGB", splits: dict[str, int] = SPLITS,
                  per_class: int = PER_CLASS, suffix: str = ".png") -> Path:
    """Layout (b): ``root/<split>/c<i>/<j><suffix>``, every image distinct noise."""
    rng = np.random.default_rng(0)
    for split, classes in splits.items():
        for c in range(classes):
            folder = root / split / f"{split}-c{c}"
            folder.mkdir(parents=True)
            for j in range(per_class):
                pixel_image(rng, size, mode).save(folder / f"{j}{suffix}")
    return root


def csv_layout(root: Path, size: int = 12) -> Path:
    """Layout (a): ``root/images/*.png`` and ``{train,val,test}.csv``."""
    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True)
    for split, classes in SPLITS.items():
        rows = ["filename,label"]
        for c in range(classes):
            for j in range(PER_CLASS):
                name = f"n{split}{c}_{j}.png"
                pixel_image(rng, size, "RGB").save(root / "images" / name)
                rows.append(f"{name},n{split}{c}")
        (root / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return root


def pickle_layout(root: Path, size: int = 12) -> Path:
    """Layout (c): learn2learn's ``mini-imagenet-cache-*.pkl``."""
    rng = np.random.default_rng(2)
    root.mkdir(parents=True)
    for split, name in (("train", "train"), ("val", "validation"), ("test", "test")):
        classes = SPLITS[split]
        data = rng.integers(0, 256, (classes * PER_CLASS, size, size, 3), dtype=np.uint8)
        class_dict = {f"n{split}{c}": list(range(c * PER_CLASS, (c + 1) * PER_CLASS)) for c in range(classes)}
        with open(root / f"mini-imagenet-cache-{name}.pkl", "wb") as file:
            pickle.dump({"image_data": data, "class_dict": class_dict}, file)
    return root


def family(task: str, num_agents: int = 2, **keys) -> ImageFolderTasks:
    values = dict(task=task, heterogeneity="none", n_way=3, shots=1, queries=2, rotations=False, filters=4,
                  dtype="float32")
    values.update(keys)
    cls = MiniImageNetTasks if task == "miniimagenet" else ImageFolderTasks
    return cls.from_config(RunConfig(**values), num_agents)


def cache_files(root: Path) -> list[Path]:
    return sorted((root / CACHE_FOLDER).glob("*.npy")) if (root / CACHE_FOLDER).is_dir() else []


# -- layouts and splits ------------------------------------------------------------------------


def test_image_folder_splits_are_disjoint_and_complete(tmp_path: Path) -> None:
    root = class_folders(tmp_path / "d")
    data, found = load_image_folder(root, 0, 0)
    assert found == f"class folders in {root}"
    assert (len(data.train), len(data.val), len(data.test)) == (6, 3, 3)
    assert sorted(data.train + data.val + data.test) == list(range(12))
    assert data.counts == (PER_CLASS,) * 12 and data.images.shape == (60, 3, 16, 16)
    assert all(data.names[b].startswith(split) for split, bases in
               (("train", data.train), ("val", data.val), ("test", data.test)) for b in bases)
    # Each class's images are its folder's files, decoded (uint8 / 255).
    first = np.asarray(Image.open(root / "val" / "val-c1" / "3.png"), dtype=np.float32).transpose(2, 0, 1) / 255
    base = data.names.index("val/val-c1")
    np.testing.assert_allclose(data.class_images(base)[3].numpy(), first, rtol=0, atol=1e-7)


@pytest.mark.parametrize("layout", ["a", "b", "c"])
def test_miniimagenet_reads_each_layout_and_says_which(tmp_path: Path, layout: str) -> None:
    make = {"a": csv_layout, "b": class_folders, "c": pickle_layout}[layout]
    folder = make(tmp_path / "data" / "miniimagenet")  # the sub-folder is looked in too
    data, found = load_miniimagenet(tmp_path / "data", 0, 0)
    assert found.startswith(f"layout ({layout})") and str(folder) in found
    assert data.images.shape == (60, 3, 84, 84) and data.images.dtype == np.uint8  # 12 px resized to 84
    assert (len(data.train), len(data.val), len(data.test)) == (6, 3, 3)
    tasks = family("miniimagenet", data_dir=str(tmp_path / "data"), image_size=16)
    assert "MiniImageNet, layout" in tasks.source and tasks.make_model()(torch.zeros(2, 3, 16, 16)).shape == (2, 3)


def test_the_three_layouts_hold_the_same_images_for_the_same_pixels(tmp_path: Path) -> None:
    """Layout (c)'s pickles hold the pixels themselves: class n<split><c>'s image j is row
    c * 5 + j of its split's image_data."""
    pickle_layout(tmp_path / "c")
    data, _ = load_miniimagenet(tmp_path / "c", 12, 0)
    with open(tmp_path / "c" / "mini-imagenet-cache-validation.pkl", "rb") as file:
        raw = pickle.load(file)["image_data"]
    base = data.names.index("val/nval2")
    np.testing.assert_array_equal(data.images[data.offsets[base] + 4], raw[2 * PER_CLASS + 4].transpose(2, 0, 1))


# -- tasks ------------------------------------------------------------------------------------


def test_tasks_have_n_way_classes_of_shots_plus_queries_images(tmp_path: Path) -> None:
    tasks = family("image-folder", data_dir=str(class_folders(tmp_path / "d")), n_way=3, shots=2, queries=3)
    data = tasks.data
    pool = {split: torch.cat([data.class_images(b) for b in bases]).reshape(-1, 3 * 16 * 16)
            for split, bases in (("train", data.train), ("val", data.val), ("test", data.test))}
    for draw, split in ((tasks.sample, "train"), (tasks.sample_evaluation, "val"), (tasks.sample_test, "test")):
        batch = agent_tasks(draw, 4, None if draw is tasks.sample else 0, seed=3)
        assert batch.x_support.shape == (4, 6, 3, 16, 16) and batch.x_query.shape == (4, 9, 3, 16, 16)
        for t in range(4):
            assert torch.bincount(batch.y_support[t]).tolist() == [2] * 3
            assert torch.bincount(batch.y_query[t]).tolist() == [3] * 3
            images = torch.cat([batch.x_support[t], batch.x_query[t]]).reshape(-1, 3 * 16 * 16)
            assert len(torch.unique(images, dim=0)) == 15  # 3 classes x (2 + 3) distinct images
            # every image comes from the split's classes (val: evaluation rounds, test: the final one)
            assert all((image == pool[split]).all(1).any() for image in images)


def test_rotations_class_windows_and_grey_images(tmp_path: Path) -> None:
    root = class_folders(tmp_path / "d", mode="L", size=16)
    tasks = family("image-folder", num_agents=3, data_dir=str(root), heterogeneity="classes", rotations=True,
                   n_way=5)
    assert tasks.data.channels == 1 and tasks.make_model()(torch.zeros(2, 1, 16, 16)).shape == (2, 5)
    # classes: agent k's window of the 6 meta-train classes starts at floor(6k / 3), size max(ceil(5 / 4), 2) = 2
    train = np.array(tasks.data.train)
    for k, start in enumerate((0, 2, 4)):
        expected = (train[[start, start + 1], None] * 4 + np.arange(4)).ravel()
        np.testing.assert_array_equal(tasks.classes("train", k), expected)
    assert len(tasks.classes("val", 0)) == 8  # 3 classes: window of 2 with 4 rotations
    colour = family("image-folder", data_dir=str(root), channels=3)  # grey files read as colour on request
    assert colour.data.channels == 3 and colour.data.images.shape[1:] == (3, 16, 16)


# -- the shared cache ---------------------------------------------------------------------------


def test_two_processes_map_the_same_cache_file(tmp_path: Path) -> None:
    root = class_folders(tmp_path / "d")
    data, _ = load_image_folder(root, 8, 0)
    (cache,) = cache_files(root)
    assert isinstance(data.images, np.memmap) and Path(data.images.filename) == cache
    assert not data.images.flags.writeable  # mapped read only: the pages are the operating system's, shared
    code = ("import sys; from pathlib import Path; from flower_difmaml.tasks.image_folder import load_image_folder; "
            "d, _ = load_image_folder(Path(sys.argv[1]), 8, 0); print(d.images.filename, float(d.images[7].sum()))")
    other = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, check=True)
    assert "decoding" not in other.stderr  # decoded once per machine: the second process maps it
    filename, total = other.stdout.split()
    assert Path(filename) == cache and float(total) == float(data.images[7].sum())


def test_a_changed_dataset_is_decoded_again(tmp_path: Path) -> None:
    root = class_folders(tmp_path / "d")
    load_image_folder(root, 8, 0)
    pixel_image(np.random.default_rng(9), 16, "RGB").save(root / "train" / "train-c0" / "5.png")
    data, _ = load_image_folder.__wrapped__(root, 8, 0)  # a new process would see the change
    assert data.counts[0] == PER_CLASS + 1 and len(cache_files(root)) == 2


# -- the validation split in a run ----------------------------------------------------------------


def test_a_run_reports_validation_classes_each_round_and_test_classes_at_the_end(tmp_path: Path) -> None:
    root = class_folders(tmp_path / "d")
    config = RunConfig(task="image-folder", data_dir=str(root), topology="ring", n_way=3, shots=1, queries=2,
                       filters=4, num_rounds=2, eval_every=1, eval_tasks=2, final_eval_tasks=6, tasks_per_agent=1,
                       results_dir=str(tmp_path / "results"), run_name="r")
    lines: list[str] = []
    summary = run_vectorized(config, 3, progress=lines.append)
    assert any(line.startswith("flower-difmaml: image-folder data: class folders in") for line in lines)
    run = tmp_path / "results" / "r"
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evaluations = [m for m in metrics if "full-acc-1" in m]
    assert [m["classes"] for m in evaluations[:-1]] == [{"full": "meta-validation", "own": "meta-validation"}] * 2
    assert evaluations[-1]["classes"] == {"full": "meta-validation", "own": "meta-validation",
                                          "test-full": "meta-test", "test-own": "meta-test"}
    assert not any("test-full-acc-1" in m for m in evaluations[:-1])
    final = json.loads((run / "summary.json").read_text())
    assert {"full-acc-10", "test-full-acc-10", "test-own-acc-1-ci95"} <= set(final["final"])
    assert final["evaluation-classes"]["test-own"] == "meta-test" and summary["final"] == final["final"]


def test_flower_engine_gives_the_vectorised_numbers_with_a_validation_split(tmp_path: Path) -> None:
    """The ClientApp knows the last round from the run config: its final evaluation draws the
    meta-test tasks too, as the vectorised engine's does."""
    root = class_folders(tmp_path / "d", mode="L", size=16)
    config = RunConfig(task="image-folder", data_dir=str(root), topology="ring", n_way=3, shots=1, queries=2,
                       filters=4, num_rounds=2, eval_every=1, eval_tasks=2, final_eval_tasks=6, tasks_per_agent=1,
                       inner_lr=0.4, eval_inner_steps=3, meta_lr=0.1, results_dir=str(tmp_path), run_name="flower")
    run_in_flower(config, 3)
    run_vectorized(config.replace(run_name="vectorized"), 3, progress=lambda line: None)
    flower, vectorized = (json.loads((tmp_path / name / "summary.json").read_text()) for name in ("flower", "vectorized"))
    assert "test-own-acc-3" in flower["final"] and flower["final"].keys() == vectorized["final"].keys()
    for key, value in flower["final"].items():
        assert vectorized["final"][key] == pytest.approx(value, rel=5e-3, abs=1e-6), key
    assert flower["evaluation-classes"] == vectorized["evaluation-classes"]


def test_families_without_a_validation_split_keep_their_names() -> None:
    learner = MetaLearner.from_config(RunConfig(task="digits", filters=4), 2)
    assert learner.final_keys == () and learner.evaluation_classes == {"full": "meta-test", "own": "meta-test"}


# -- refusals: one line naming the key, nothing cached -----------------------------------------------


def undecodable(root: Path) -> str:
    class_folders(root)
    (root / "train" / "train-c2" / "9.png").write_bytes(b"not a png")
    return f"data-dir: cannot decode image {root / 'train' / 'train-c2' / '9.png'}"


def mixed_sizes(root: Path) -> str:
    class_folders(root)
    pixel_image(np.random.default_rng(0), 10, "RGB").save(root / "test" / "test-c1" / "9.png")
    return "image-size: 0 keeps the images' size, but"


def missing_csv_file(root: Path) -> str:
    csv_layout(root / "miniimagenet")
    (root / "miniimagenet" / "images" / "nval1_2.png").unlink()
    return "data-dir: " + str(root / "miniimagenet" / "val.csv") + " row 9 names nval1_2.png, which is not in"


@pytest.mark.parametrize(
    ("task", "make", "keys", "words"),
    [
        ("image-folder", lambda root: f"data-dir: no folder {root}", {}, None),
        ("image-folder", lambda root: (root.mkdir(), "data-dir: no class folders in")[1], {}, None),
        ("miniimagenet", lambda root: (root.mkdir(), "data-dir: no MiniImageNet in")[1], {},
         "mini-imagenet-cache-train.pkl"),
        ("image-folder", lambda root: (class_folders(root), "n-way: 4 above the 3 classes all agents have in the "
                                                            "meta-validation classes")[1], {"n_way": 4}, None),
        ("image-folder", lambda root: (class_folders(root), "shots: shots + queries = 6 above the 5 examples "
                                                            "train/train-c0 has")[1], {"shots": 3, "queries": 3}, None),
        ("image-folder", undecodable, {}, None),
        ("image-folder", mixed_sizes, {}, "allowed: image-size > 0"),
        ("miniimagenet", missing_csv_file, {}, None),
        ("image-folder", lambda root: (class_folders(root), "channels: 2; allowed: 0")[1], {"channels": 2}, None),
        ("image-folder", lambda root: (class_folders(root), "image-size: the images are 12 px, below the 16")[1],
         {"image_size": 12}, None),
    ],
)
def test_bad_data_is_one_line_naming_the_key(tmp_path: Path, task: str, make, keys: dict, words: str | None) -> None:
    root = tmp_path / "data"
    start = make(root)
    with pytest.raises(ConfigError) as error:
        family(task, data_dir=str(root), **keys)
    message = str(error.value)
    assert message.startswith(start) and "\n" not in message and (words is None or words in message)
    if root.is_dir():
        assert not cache_files(root) or keys  # a refused dataset leaves no cache (a refused key: a good cache)
        assert not list(root.rglob("*.tmp"))
