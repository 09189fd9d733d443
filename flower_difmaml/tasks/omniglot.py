"""Few-shot Omniglot (Lake et al., 2015): 1623 handwritten characters of 50 alphabets, 20 examples each.

The data are torchvision's layout of the original release under the data dir:
``omniglot-py/images_background/<alphabet>/<character>/*.png`` (964 characters, 30
alphabets) and ``omniglot-py/images_evaluation/...`` (659 characters, 20 alphabets),
pooled into 1623 base classes. Alphabets, characters and files are read in sorted order
(so class ids do not depend on the file system). Each PNG (black ink on white, 105x105)
becomes 28x28 with ``resize((28, 28), Image.LANCZOS)`` of its greyscale image, as a float
in [0, 1] with ink = 1: 1 - pixel / 255. The group of a character is its alphabet's index.

The folders are read directly (with PIL); torchvision is used only to download them
(``download=true``). Its ``Omniglot`` class itself would need the two zip files next to the
folders (it checks their md5 even without download) and lists folders unsorted.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import ConfigError, one_line
from .images import FewShotImages, ImageClasses

IMAGE_SIZE = 28
FOLDER = "omniglot-py"
SETS = ("images_background", "images_evaluation")
MISSING = (
    "data-dir: no Omniglot in {root} (expected {folder}/images_background and {folder}/images_evaluation; "
    "{what}); download it with download=true on a machine with a network, or copy those folders there"
)


def _characters(root: Path) -> list[tuple[int, Path]]:
    """(alphabet index, character folder) of every character, background set first, sorted by name.

    Raises ConfigError naming data-dir and what is missing when the folders are incomplete.
    """
    found: list[tuple[int, Path]] = []
    alphabet = 0
    for name in SETS:
        folder = root / FOLDER / name
        if not folder.is_dir():
            raise ConfigError(MISSING.format(root=root, folder=FOLDER, what=f"{FOLDER}/{name} is missing"))
        alphabets = sorted(p for p in folder.iterdir() if p.is_dir())
        if not alphabets:
            raise ConfigError(MISSING.format(root=root, folder=FOLDER, what=f"{FOLDER}/{name} has no alphabets"))
        for path in alphabets:
            characters = sorted(p for p in path.iterdir() if p.is_dir())
            if not characters:
                what = f"alphabet {name}/{path.name} has no characters"
                raise ConfigError(MISSING.format(root=root, folder=FOLDER, what=what))
            found += [(alphabet, character) for character in characters]
            alphabet += 1
    return found


def _pngs(character: Path) -> list[Path]:
    return sorted(p for p in character.iterdir() if p.suffix == ".png" and p.is_file())


def _check(root: Path) -> list[tuple[int, Path, list[Path]]]:
    """(alphabet index, character folder, its PNGs) of every character; ConfigError when incomplete."""
    found = [(alphabet, character, _pngs(character)) for alphabet, character in _characters(root)]
    counts = [len(pngs) for _, _, pngs in found]
    usual = max(set(counts), key=counts.count)  # the most common number of examples
    for _, character, pngs in found:
        if not pngs or len(pngs) != usual:
            what = f"character {character.relative_to(root / FOLDER)} has {len(pngs)} PNGs, most have {usual}"
            raise ConfigError(MISSING.format(root=root, folder=FOLDER, what=what))
    return found


def _download(root: Path) -> None:
    """Both sets through ``torchvision.datasets.Omniglot(..., download=True)``."""
    try:
        from torchvision.datasets import Omniglot
    except Exception as error:  # noqa: BLE001 - e.g. a torchvision built for another torch
        raise ConfigError(
            f"download: true needs torchvision (pip install 'flower-difmaml[download]'), which does not import here "
            f"({one_line(error)}); or copy {FOLDER}/images_background and {FOLDER}/images_evaluation to {root}"
        ) from error
    for background in (True, False):
        try:
            Omniglot(root=str(root), background=background, download=True)
        except (OSError, RuntimeError) as error:
            raise ConfigError(f"download: could not download Omniglot to {root} ({one_line(error)})") from error


@functools.lru_cache(maxsize=None)
def _read(root: Path) -> tuple[torch.Tensor, tuple[int, ...]]:
    found = _check(root)
    images = np.empty((len(found), len(found[0][2]), IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    for c, (_, _, pngs) in enumerate(found):
        for e, png in enumerate(pngs):
            with Image.open(png) as image:
                small = image.convert("L").resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS)
            images[c, e] = 1.0 - np.asarray(small, dtype=np.float32) / 255.0
    return torch.from_numpy(images), tuple(alphabet for alphabet, _, _ in found)


def load_omniglot(data_dir: str | Path, download: bool = False) -> tuple[torch.Tensor, tuple[int, ...]]:
    """(images (C, 20, 28, 28) float32 in [0, 1], alphabet index of each character), C = 1623.

    Read once per process for each resolved ``data_dir`` (later calls return the same
    objects). Without ``download`` the folders must be there and complete: ConfigError
    naming data-dir otherwise. With ``download``, torchvision fetches what is missing first.
    """
    root = Path(data_dir).expanduser().resolve()
    if download:
        try:
            _check(root)
        except ConfigError:
            _download(root)
    return _read(root)


def omniglot_split(num_characters: int, meta_train_characters: int, split_seed: int) -> tuple[tuple[int, ...], ...]:
    """(train, test): ``np.random.default_rng(split_seed).permutation(num_characters)``, the first
    ``meta_train_characters`` for meta-training, the rest for meta-testing."""
    if not 1 <= meta_train_characters <= num_characters - 1:
        raise ConfigError(
            f"meta-train-characters: {meta_train_characters} outside the {num_characters} characters; "
            f"allowed: 1 <= meta-train-characters <= {num_characters - 1}"
        )
    order = np.random.default_rng(split_seed).permutation(num_characters).tolist()
    return tuple(order[:meta_train_characters]), tuple(order[meta_train_characters:])


class OmniglotTasks(FewShotImages):
    """N-way K-shot Omniglot; heterogeneity ``none``, ``classes`` or ``alphabet``.

    The MAML literature's usual setting, the config's defaults: 1200 meta-train characters
    (the other 423 for meta-testing), rotations by 90, 180 and 270 degrees as new classes,
    split seed 1. The Dif-MAML authors' setting: ``meta-train-characters=1400
    rotations=false split-seed=9314`` (their code shuffles with seed 9314 in its own RNG, so
    the characters are not identical to theirs, only the sizes and the rule).
    """

    HETEROGENEITY = ("none", "classes", "alphabet", "clusters")
    KEYS = (*FewShotImages.KEYS, "data-dir", "download", "split-seed", "meta-train-characters")

    @classmethod
    def from_config(cls, config: Any, num_agents: int) -> OmniglotTasks:
        """Built from keys data-dir, download, split-seed, meta-train-characters and those of digits."""
        images, groups = load_omniglot(Path(config.data_dir).expanduser(), download=config.download)
        train, test = omniglot_split(len(groups), config.meta_train_characters, config.split_seed)
        return cls.from_data(ImageClasses.uniform(images, groups, train, test), config, num_agents)
