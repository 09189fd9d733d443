"""Few-shot image families: Omniglot (small fake data in the real folder layout) and digits."""

from __future__ import annotations

import math
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from helpers import agent_tasks

from flower_difmaml.errors import ConfigError
from flower_difmaml.meta.maml import meta_gradient, meta_gradient_loop
from flower_difmaml.models import initial_parameters
from flower_difmaml.streams import Stream, keyed_generator
from flower_difmaml.tasks.digits import META_TEST_DIGITS, DigitsTasks, load_digits_classes
from flower_difmaml.tasks.base import parse_dtype
from flower_difmaml.tasks.images import FewShotImages, ImageClasses
from flower_difmaml.tasks.omniglot import OmniglotTasks, load_omniglot, omniglot_split

# Characters per alphabet: 3 alphabets in the background set, 2 in the evaluation set.
ALPHABETS = {"images_background": (4, 3, 3), "images_evaluation": (3, 4)}
CHARACTERS = sum(sum(sizes) for sizes in ALPHABETS.values())  # 17
GROUPS = tuple(a for a, size in enumerate((4, 3, 3, 3, 4)) for _ in range(size))
EXAMPLES = 20


def write_omniglot(root: Path, sets: dict[str, tuple[int, ...]] = ALPHABETS, examples: int = EXAMPLES) -> Path:
    """Fake Omniglot under ``root``: 105x105 1-bit PNGs, black ink on white, one blob per
    character (its place and size set by the character) moved a little per example."""
    character = 0
    for name, sizes in sets.items():
        for a, size in enumerate(sizes):
            for c in range(size):
                folder = root / "omniglot-py" / name / f"Alphabet_{a}" / f"character{c + 1:02d}"
                folder.mkdir(parents=True)
                x, y = 10 + 11 * (character % 5), 10 + 13 * (character // 5)
                for e in range(examples):
                    image = Image.new("1", (105, 105), 1)
                    draw = ImageDraw.Draw(image)
                    dx, dy = e % 5, e // 5
                    draw.ellipse((x + dx, y + dy, x + dx + 20 + character, y + dy + 30), fill=0)
                    image.save(folder / f"{character:04d}_{e + 1:02d}.png")
                character += 1
    return root


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny tensors: one intra-op thread (two threads on a busy 2-core machine spin for seconds)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def omniglot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_omniglot(tmp_path_factory.mktemp("omniglot"))


def config(**overrides: object) -> types.SimpleNamespace:
    values = dict(heterogeneity="none", n_way=3, shots=1, queries=2, rotations=False, filters=8, dtype="auto",
                  data_dir="", download=False, split_seed=1, meta_train_characters=11, clusters=2)
    values.update(overrides)
    return types.SimpleNamespace(**values)


def omniglot(omniglot_dir: Path, num_agents: int = 1, **overrides: object) -> OmniglotTasks:
    return OmniglotTasks.from_config(config(data_dir=str(omniglot_dir), **overrides), num_agents)


def bases(family: FewShotImages, split: str, agent: int | None) -> list[int]:
    """The base classes in ``agent``'s classes, in order, each once."""
    return list(dict.fromkeys((family.classes(split, agent) // family.per_base).tolist()))


# -- Omniglot data -------------------------------------------------------------------------------


def test_omniglot_loader_shapes_values_groups_and_cache(omniglot_dir: Path) -> None:
    images, groups = load_omniglot(omniglot_dir)
    assert images.shape == (CHARACTERS, EXAMPLES, 28, 28) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    assert groups == GROUPS  # alphabets in sorted order, background first, distinct across the sets
    # Ink is 1, paper 0; the file is resized with LANCZOS from its greyscale image.
    png = omniglot_dir / "omniglot-py/images_background/Alphabet_0/character01/0000_01.png"
    grey = np.asarray(Image.open(png).convert("L").resize((28, 28), Image.LANCZOS), dtype=np.float32)
    np.testing.assert_allclose(images[0, 0].numpy(), 1 - grey / 255)
    assert images[:, :, 0, 0].max() == 0 and images[0, 0].max() == 1
    again, groups_again = load_omniglot(str(omniglot_dir / "omniglot-py" / ".."))  # same resolved dir
    assert again is images and groups_again is groups


def test_split_is_disjoint_covering_and_set_by_its_seed() -> None:
    train, test = omniglot_split(1623, 1200, 1)
    assert len(train) == 1200 and len(test) == 423
    assert not set(train) & set(test) and set(train) | set(test) == set(range(1623))
    assert (train, test) == omniglot_split(1623, 1200, 1)
    assert train != omniglot_split(1623, 1200, 2)[0]
    assert omniglot_split(1623, 1400, 9314)[0] == tuple(np.random.default_rng(9314).permutation(1623)[:1400])
    for bad in (0, 1623):
        with pytest.raises(ConfigError, match=r"^meta-train-characters: .*1622$"):
            omniglot_split(1623, bad, 1)


def missing_message(root: Path) -> str:
    with pytest.raises(ConfigError) as error:
        load_omniglot(root)
    message = str(error.value)
    assert message.startswith(f"data-dir: no Omniglot in {root.resolve()}") and "\n" not in message
    assert "download=true" in message
    return message


def test_missing_or_incomplete_data_names_data_dir(tmp_path: Path) -> None:
    assert "omniglot-py/images_background is missing" in missing_message(tmp_path / "nothing")
    write_omniglot(tmp_path / "half", {"images_background": (2,)}, examples=2)
    assert "omniglot-py/images_evaluation is missing" in missing_message(tmp_path / "half")
    write_omniglot(tmp_path / "short", {"images_background": (2,), "images_evaluation": (2,)}, examples=3)
    next((tmp_path / "short").rglob("*.png")).unlink()
    assert "has 2 PNGs, most have 3" in missing_message(tmp_path / "short")


def test_download_without_torchvision_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)  # importing it raises ImportError
    with pytest.raises(ConfigError, match=r"^download: true needs torchvision \(pip install .flower-difmaml\[download\].\)"):
        load_omniglot(tmp_path, download=True)


def test_from_config_expands_the_home_directory(omniglot_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(omniglot_dir.parent))
    family = OmniglotTasks.from_config(config(data_dir=f"~/{omniglot_dir.name}"), 2)
    assert np.shares_memory(family.data.images, load_omniglot(omniglot_dir)[0].numpy())  # a view, not a copy
    train, test = omniglot_split(CHARACTERS, 11, 1)
    assert (family.data.train, family.data.test) == (train, test)


# -- classes of each agent -----------------------------------------------------------------------


def test_rotations_give_four_classes_per_character_rotated(omniglot_dir: Path) -> None:
    family = omniglot(omniglot_dir, rotations=True, n_way=5, shots=1, queries=1)
    plain = omniglot(omniglot_dir, rotations=False, n_way=3)
    for split in ("train", "test"):
        assert len(family.classes(split, None)) == 4 * len(plain.classes(split, None))
    train = np.array(family.data.train)
    np.testing.assert_array_equal(family.classes("train", None), (train[:, None] * 4 + np.arange(4)).ravel())
    # Replay the draws of one task: every image is its character's example rotated by r * 90 degrees.
    batch = agent_tasks(family.sample, 1, None, seed=3)
    rng = keyed_generator(3, 0, 0, Stream.TRAIN)
    chosen = rng.choice(family.classes("train", None), 5, replace=False)
    for i, c in enumerate(chosen):
        support, query = rng.choice(EXAMPLES, 2, replace=False)
        for x, example in ((batch.x_support, support), (batch.x_query, query)):
            expected = family.data.class_images(c // 4)[example, 0]
            assert torch.equal(x[0, i, 0], torch.rot90(expected, int(c % 4), dims=(-2, -1)))
    assert {int(c % 4) for c in chosen} != {0}  # seed 3 draws rotated classes


def test_alphabet_heterogeneity_gives_each_agent_its_alphabets(omniglot_dir: Path) -> None:
    family = omniglot(omniglot_dir, num_agents=2, heterogeneity="alphabet", n_way=2, rotations=True)
    draws = {"train": family.sample, "test": family.sample_evaluation}
    for split, characters in (("train", family.data.train), ("test", family.data.test)):
        alphabets = sorted({GROUPS[c] for c in characters})
        for k in range(2):
            own = bases(family, split, k)
            assert own == [c for c in characters if alphabets.index(GROUPS[c]) % 2 == k] and own
            assert len(family.classes(split, k)) == 4 * len(own)
            # Every drawn image is an example of one of the agent's characters, rotated.
            own_images = torch.cat([family.data.class_images(b) for b in own]).reshape(-1, 28 * 28)
            batch = agent_tasks(draws[split], 4, k, seed=k)
            for x in torch.cat([batch.x_support, batch.x_query], dim=1).reshape(-1, 28, 28):
                assert any((torch.rot90(x, -r, dims=(-2, -1)).reshape(1, -1) == own_images).all(1).any()
                           for r in range(4))
        assert sorted(bases(family, split, 0) + bases(family, split, 1)) == sorted(characters)


def synthetic(train: tuple[int, ...], test: tuple[int, ...] = (5, 6, 7)) -> ImageClasses:
    count = max(train + test) + 1
    return ImageClasses.uniform(torch.rand(count, 4, 16, 16), range(count), train, test)


def test_classes_windows_by_hand() -> None:
    data = synthetic(train=(4, 0, 3, 1, 2))  # B = 5 base classes in this order
    def windows(n_way: int, rotations: bool) -> list[list[int]]:
        family = FewShotImages(data, num_agents=3, heterogeneity="classes", n_way=n_way, shots=1, queries=1,
                               rotations=rotations)
        return [bases(family, "train", k) for k in range(3)]
    # size max(ceil(n_way / R), ceil(5 / 3)), starts floor(5k / 3) = 0, 1, 3
    assert windows(2, False) == [[4, 0], [0, 3], [1, 2]]
    assert windows(3, False) == [[4, 0, 3], [0, 3, 1], [1, 2, 4]]  # wraps
    assert windows(5, True) == [[4, 0], [0, 3], [1, 2]]  # ceil(5 / 4) = 2 characters, 8 classes
    family = FewShotImages(data, num_agents=3, heterogeneity="classes", n_way=5, shots=1, queries=1, rotations=True)
    np.testing.assert_array_equal(family.classes("train", 2), [4, 5, 6, 7, 8, 9, 10, 11])
    # Meta-test (5, 6, 7): size max(ceil(5 / 4), ceil(3 / 3)) = 2, agent 0 has 5 and 6.
    np.testing.assert_array_equal(family.classes("test", 0), np.arange(20, 28))
    none = FewShotImages(data, num_agents=3, heterogeneity="none", n_way=2, shots=1, queries=1, rotations=False)
    assert bases(none, "train", 1) == [4, 0, 3, 1, 2] and bases(none, "test", 2) == [5, 6, 7]
    # clusters: 6 agents in 3 groups (0, 0, 1, 1, 2, 2) get the windows 3 agents get
    clusters = FewShotImages(data, num_agents=6, heterogeneity="clusters", clusters=3, n_way=2, shots=1, queries=1,
                             rotations=False)
    assert clusters.groups == (0, 0, 1, 1, 2, 2)
    assert [bases(clusters, "train", k) for k in range(6)] == [[4, 0], [4, 0], [0, 3], [0, 3], [1, 2], [1, 2]]


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "agents", "key", "words"),
    [
        (dict(n_way=12), 1, "n-way", "above the 11 classes all agents have in the meta-train"),
        (dict(n_way=7), 1, "n-way", "above the 6 classes all agents have in the meta-test"),
        (dict(n_way=4, heterogeneity="alphabet"), 2, "n-way", "classes agent 1 has in the meta-test"),
        (dict(n_way=3, heterogeneity="alphabet"), 6, "n-way", "(or fewer agents, or another heterogeneity)"),
        (dict(shots=5, queries=16), 1, "shots", "shots + queries = 21 above the 20 examples"),
        (dict(n_way=1), 1, "n-way", "1 below 2"),
        (dict(queries=0), 1, "queries", "0 below 1"),
        (dict(heterogeneity="phase"), 1, "heterogeneity", "allowed: none, classes, alphabet, clusters"),
        (dict(heterogeneity="clusters", clusters=3), 2, "clusters", "3 out of range; allowed: 1..2"),
        (dict(dtype="float16"), 1, "dtype", "allowed: auto, float32, float64"),
    ],
)
def test_config_errors_name_the_key(omniglot_dir: Path, overrides: dict, agents: int, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as error:
        omniglot(omniglot_dir, agents, **overrides)
    message = str(error.value)
    assert message.startswith(f"{key}: ") and words in message and "\n" not in message


# -- task batches --------------------------------------------------------------------------------


def test_same_seed_same_batch_other_seed_other_batch(omniglot_dir: Path) -> None:
    family = omniglot(omniglot_dir, num_agents=2, heterogeneity="classes", rotations=True, n_way=5)
    for draw in (family.sample, family.sample_evaluation):
        a, b = agent_tasks(draw, 3, 1, seed=5), agent_tasks(draw, 3, 1, seed=5)
        c = agent_tasks(draw, 3, 1, seed=6)
        assert all(torch.equal(x, y) for x, y in zip(a, b))
        assert not torch.equal(a.x_support, c.x_support)


def test_shapes_labels_and_distinct_support_and_query(omniglot_dir: Path) -> None:
    family = omniglot(omniglot_dir, n_way=4, shots=3, queries=5, rotations=True)
    batches = agent_tasks(family.sample, 6, None, seed=0), agent_tasks(family.sample_evaluation, 6, 0, seed=0)
    for batch in batches:
        assert batch.x_support.shape == (6, 12, 1, 28, 28) and batch.x_query.shape == (6, 20, 1, 28, 28)
        assert batch.y_support.dtype == batch.y_query.dtype == torch.int64
        assert batch.x_support.dtype == torch.float32
        for t in range(6):
            assert torch.bincount(batch.y_support[t]).tolist() == [3] * 4
            assert torch.bincount(batch.y_query[t]).tolist() == [5] * 4
            for label in range(4):
                examples = torch.cat([batch.x_support[t][batch.y_support[t] == label],
                                      batch.x_query[t][batch.y_query[t] == label]]).flatten(1)
                assert len(torch.unique(examples, dim=0)) == 8  # 3 + 5 distinct examples
    # Evaluation tasks draw from the meta-test characters only.
    test_images = torch.cat([family.data.class_images(b) for b in family.data.test]).reshape(-1, 28 * 28)
    batch = agent_tasks(family.sample_evaluation, 2, None, seed=1)
    for x in batch.x_support.reshape(-1, 28, 28):
        assert any((torch.rot90(x, -r, dims=(-2, -1)).reshape(1, -1) == test_images).all(1).any() for r in range(4))


def test_float64_model_batch_and_metrics(omniglot_dir: Path) -> None:
    family = omniglot(omniglot_dir, dtype="float64", n_way=3, shots=2, queries=2)
    assert family.dtype == torch.float64 and parse_dtype("auto", torch.float32) == torch.float32
    batch = agent_tasks(family.sample, 2, None, seed=0)
    assert batch.x_support.dtype == batch.x_query.dtype == torch.float64
    model = family.make_model()
    assert all(p.dtype == torch.float64 for p in model.parameters())
    prediction = model(batch.x_query[0])
    assert prediction.shape == (6, 3)
    metrics = family.metrics(prediction, batch.y_query[0])
    assert set(metrics) == set(family.metric_names) and metrics["acc"].dtype == torch.float64
    assert metrics["loss"] == family.loss_fn(prediction, batch.y_query[0])
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    assert family.metrics(logits, torch.tensor([0, 1, 0, 2]))["acc"].item() == 0.5


# -- digits ----------------------------------------------------------------------------------------


def test_digits_classes_and_split() -> None:
    data = load_digits_classes()
    assert data is load_digits_classes()
    assert data.images.shape == (1740, 1, 28, 28) and data.counts == (174,) * 10
    assert data.images.min() >= 0 and data.images.max() <= 1
    assert data.test == META_TEST_DIGITS == (7, 8, 9) and data.train == (0, 1, 2, 3, 4, 5, 6)
    family = DigitsTasks.from_config(config(n_way=5, rotations=True), 3)
    train, test = family.classes("train", None), family.classes("test", None)
    assert len(train) + len(test) == 40 and not set(train) & set(test)
    assert set((test // 4).tolist()) == {7, 8, 9}
    batch = agent_tasks(family.sample_evaluation, 2, None, seed=0)
    assert batch.x_support.shape == (2, 5, 1, 28, 28)
    with pytest.raises(ConfigError, match=r"^heterogeneity: unknown 'alphabet'; allowed: none, classes, clusters$"):
        DigitsTasks.from_config(config(heterogeneity="alphabet"), 3)
    with pytest.raises(ConfigError, match=r"^n-way: 5 above the 3 classes all agents have in the meta-test"):
        DigitsTasks.from_config(config(n_way=5, rotations=False), 3)


def test_second_order_meta_gradient_through_conv4_matches_the_loop() -> None:
    """torch.func's vmap + double backward through Conv-4 (batch-statistics norm, max-pool) and
    cross entropy agrees with plain autograd, and with a central finite difference."""
    family = DigitsTasks.from_config(config(n_way=5, shots=1, queries=2, rotations=True, dtype="float64"), 1)
    batch = agent_tasks(family.sample, 2, None, seed=0)
    model = family.make_model()
    params = initial_parameters(model, 0)
    kwargs = dict(inner_lr=0.1, inner_steps=2, loss_fn=family.loss_fn)
    grads, loss = meta_gradient(model, params, batch, **kwargs)
    loop_grads, loop_loss = meta_gradient_loop(model, params, batch, **kwargs)
    torch.testing.assert_close(loss, loop_loss, rtol=0, atol=1e-8)
    for name in params:
        torch.testing.assert_close(grads[name], loop_grads[name], rtol=0, atol=1e-8)
    assert max(g.abs().max() for g in grads.values()) > 1e-3  # not trivially zero
    # J(w) jumps where a max-pool's argmax or a ReLU gate of the support pass switches (its
    # inner gradient is only piecewise smooth), so the finite difference needs a tiny step.
    generator = torch.Generator().manual_seed(1)
    direction = {n: torch.randn(p.shape, dtype=p.dtype, generator=generator) for n, p in params.items()}
    norm = torch.sqrt(sum((d**2).sum() for d in direction.values()))
    eps = 1e-7 / norm
    up = meta_gradient_loop(model, {n: p + eps * direction[n] for n, p in params.items()}, batch, **kwargs)[1]
    down = meta_gradient_loop(model, {n: p - eps * direction[n] for n, p in params.items()}, batch, **kwargs)[1]
    slope = sum((grads[n] * direction[n]).sum() for n in params)
    assert math.isclose(((up - down) / (2 * eps)).item(), slope.item(), rel_tol=1e-5)


def test_heterogeneity_auto_is_the_image_familys_own(omniglot_dir: Path) -> None:
    from flower_difmaml.config import RunConfig
    from flower_difmaml.learner import MetaLearner

    config = RunConfig(task="omniglot", data_dir=str(omniglot_dir), meta_train_characters=11, n_way=2, shots=1,
                       queries=1, filters=4, rotations=False)
    assert config.heterogeneity == "auto"
    assert MetaLearner.from_config(config, 2).family.heterogeneity == "classes"
