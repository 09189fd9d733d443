"""Few-shot MiniImageNet (Vinyals et al., 2016; the split of Ravi & Larochelle, 2017): 100
ImageNet classes of 600 images, 84x84x3; 64 meta-train, 16 meta-validation, 20 meta-test classes.

Read from ``data-dir`` (or its sub-folder ``miniimagenet``, ``mini-imagenet`` or
``miniImagenet``) in the first of three layouts found there:

- (c) learn2learn's cache pickles ``mini-imagenet-cache-{train,validation,test}.pkl``, each a
  dict with ``image_data`` uint8 (n, 84, 84, 3) and ``class_dict`` name -> indices;
- (a) ``images/`` with every JPEG and ``train.csv``, ``val.csv``, ``test.csv`` (rows
  ``filename,label`` after a header), classes in the order the CSV first names them;
- (b) class folders ``train/<class>/*.jpg``, ``val/...``, ``test/...`` (the Dif-MAML code's
  ``dataset/miniimagenet/``), read as ``image-folder`` reads them.

Images become ``image-size`` x ``image-size`` (0: 84) with 3 channels, decoded once per machine
into a cache file that every process maps (``image_store``). Evaluation rounds report the
meta-validation classes; the final evaluation the meta-test classes too (``test-*`` metrics).
"""

from __future__ import annotations

import csv
import functools
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ConfigError, one_line
from .image_folder import (
    ImageFolderTasks, ImageListing, check_channels, check_folder, class_folders, decode_listing, images_of,
)
from .image_store import cache_folder, cached_images, decoded, fingerprint
from .images import ImageClasses

IMAGE_SIZE = 84
SUB_FOLDERS = ("", "miniimagenet", "mini-imagenet", "miniImagenet")
PICKLES = {"train": "mini-imagenet-cache-train.pkl", "val": "mini-imagenet-cache-validation.pkl",
           "test": "mini-imagenet-cache-test.pkl"}
CSVS = {"train": "train.csv", "val": "val.csv", "test": "test.csv"}
LOOKED_FOR = ("(c) " + ", ".join(PICKLES.values()) + "; (a) images/ with " + ", ".join(CSVS.values())
              + "; (b) train/<class>/*.jpg, val/<class>/*.jpg, test/<class>/*.jpg")


def csv_listing(folder: Path) -> ImageListing | None:
    """Layout (a), or None where ``images/`` or a CSV is missing; ConfigError for a row naming a
    missing file or a malformed row."""
    images = folder / "images"
    if not images.is_dir() or not all((folder / name).is_file() for name in CSVS.values()):
        return None
    found: dict[str, list[tuple[str, list[Path]]]] = {}
    for split, name in CSVS.items():
        by_label: dict[str, list[Path]] = {}
        with open(folder / name, newline="") as rows:
            for number, row in enumerate(csv.reader(rows), start=1):
                if number == 1 and row[:2] == ["filename", "label"]:
                    continue
                if len(row) != 2:
                    raise ConfigError(f"data-dir: {folder / name} row {number} is {row!r}, expected filename,label")
                path = images / row[0]
                if not path.is_file():
                    raise ConfigError(f"data-dir: {folder / name} row {number} names {row[0]}, which is not in {images}")
                by_label.setdefault(row[1], []).append(path)
        found[split] = [(f"{split}/{label}", paths) for label, paths in by_label.items()]
    return ImageListing.of(found, f"layout (a), images/ and CSVs in {folder}")


def _read_pickle(path: Path) -> tuple[np.ndarray, dict[str, list[int]]]:
    try:
        with open(path, "rb") as file:
            content = pickle.load(file)
        return np.asarray(content["image_data"]), {str(k): list(v) for k, v in content["class_dict"].items()}
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError, AttributeError) as error:
        raise ConfigError(f"data-dir: cannot read {path} as a MiniImageNet cache pickle ({one_line(error)}; "
                          "expected a dict with image_data and class_dict)") from None


def load_pickles(folder: Path, image_size: int) -> tuple[ImageClasses, str]:
    """Layout (c): the pickles' images in class order, decoded once into a cache file."""
    paths = {split: folder / name for split, name in PICKLES.items()}
    classes: list[tuple[str, str]] = []  # (split, class name), in the cache's order
    counts: list[int] = []
    loaded: dict[str, tuple[np.ndarray, dict[str, list[int]]]] = {}  # read once, on the first decode
    key = fingerprint(paths.values(), "pickles", image_size)
    path = cache_folder(folder) / f"miniimagenet-{image_size}px-3ch-{key}.npy"
    index = path.with_suffix(".classes.txt")  # "<split>\t<class>\t<count>" lines: the order without the pickles
    if path.exists() and index.exists():
        for line in index.read_text().splitlines():
            split, name, count = line.split("\t")
            classes.append((split, name))
            counts.append(int(count))
    else:
        for split, pickle_path in paths.items():
            loaded[split] = _read_pickle(pickle_path)
            for name, indices in loaded[split][1].items():
                classes.append((split, name))
                counts.append(len(indices))

    def fill(array: np.ndarray, progress) -> None:
        row = 0
        for split in paths:
            image_data, class_dict = loaded.pop(split)
            for indices in class_dict.values():
                for i in indices:
                    image = image_data[i]
                    if image.shape != (IMAGE_SIZE, IMAGE_SIZE, 3) or image_size != IMAGE_SIZE:
                        image = decoded(Image.fromarray(np.asarray(image, dtype=np.uint8)), image_size, 3)
                    else:
                        image = image.transpose(2, 0, 1)
                    array[row] = image
                    row += 1
                    progress(row)

    images = cached_images(path, (sum(counts), 3, image_size, image_size), fill, f"{sum(counts)} MiniImageNet images")
    if not index.exists():
        index.write_text("".join(f"{s}\t{n}\t{c}\n" for (s, n), c in zip(classes, counts)))
    splits = {split: tuple(i for i, (s, _) in enumerate(classes) if s == split) for split in PICKLES}
    listing = ImageListing((), tuple(counts), tuple(f"{s}/{n}" for s, n in classes), splits,
                           f"layout (c), learn2learn's pickles in {folder}")
    return images_of(listing, images), listing.layout


@functools.lru_cache(maxsize=None)
def load_miniimagenet(root: Path, image_size: int, channels: int) -> tuple[ImageClasses, str]:
    """(ImageClasses, the layout found) under ``root`` (read once per process)."""
    root = check_folder(root)
    if check_channels(channels) == 1:
        raise ConfigError("channels: 1, but MiniImageNet is colour; allowed: 0 or 3")
    size = image_size or IMAGE_SIZE
    for folder in (root / sub for sub in SUB_FOLDERS):
        if not folder.is_dir():
            continue
        if all((folder / name).is_file() for name in PICKLES.values()):
            return load_pickles(folder, size)
        listing = csv_listing(folder) or class_folders(folder, f"layout (b), class folders in {folder}")
        if listing is not None:
            return decode_listing(listing, folder, "miniimagenet", size, 3), listing.layout
    where = ", ".join(str(root / sub) for sub in SUB_FOLDERS)
    raise ConfigError(f"data-dir: no MiniImageNet in {root} (looked in {where} for {LOOKED_FOR})")


class MiniImageNetTasks(ImageFolderTasks):
    """N-way K-shot MiniImageNet; heterogeneity ``none``, ``classes`` or ``clusters``.

    The Dif-MAML authors' setting: 5-way 5-shot (or 1-shot), 10 queries, 2 tasks per agent,
    Conv-4 with 32 filters on 84x84x3, 5 inner steps (lr 0.01) and 10 at test, Adam 1e-3, 3000
    rounds (``benchmarks/difmaml_images.py miniimagenet``), and ``rotations=false`` (the
    MiniImageNet literature does not rotate; key ``rotations`` is true by default for all image
    families).
    """

    DATASET = "MiniImageNet, "

    @staticmethod
    def load(root: Path, image_size: int, channels: int) -> tuple[ImageClasses, str]:
        return load_miniimagenet(root, image_size, channels)
