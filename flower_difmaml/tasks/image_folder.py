"""Few-shot classification over any dataset of class folders (CIFAR-FS, tieredImageNet exported
to folders, a lab's own photos): ``<data-dir>/train/<class>/<image>``, ``val/...`` (optional,
also ``validation/``) and ``test/...``.

Classes are the sub-folders of each split, images the files with an image suffix in them, both
in sorted order (so class ids do not depend on the file system). Each image becomes
``image-size`` x ``image-size`` (key ``image-size``; 0 keeps the images' own size, which must
then be one square size for all) with key ``channels`` (1 grey, 3 colour; 0: the first image's),
decoded once per machine into a cache file every process maps (``image_store``). The sampler,
rotations, class windows and heterogeneity values are those of every image family
(``FewShotImages``); with a ``val`` split, evaluation rounds report the meta-validation classes
and the final evaluation the meta-test classes too.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .image_store import cache_folder, cached_images, check_same_size, decoded, fingerprint, image_shape, open_image
from .images import FewShotImages, ImageClasses

SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "validation"), "test": ("test",)}
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
CHANNELS = (0, 1, 3)  # key ``channels``: 0 the first image's, 1 grey, 3 colour


@dataclass(frozen=True)
class ImageListing:
    """What a layout found: every image file, class after class, and each class's split."""

    files: tuple[Path, ...]
    counts: tuple[int, ...]  # files of each class
    names: tuple[str, ...]  # "<split>/<class>"
    splits: dict[str, tuple[int, ...]]  # "train", "val", "test" -> class indices ("val" may be empty)
    layout: str  # what was found, for the run's first line

    @classmethod
    def of(cls, classes: dict[str, list[tuple[str, list[Path]]]], layout: str) -> ImageListing:
        """From each split's (class name, its image files), splits in their order."""
        files = [file for split in classes.values() for _, images in split for file in images]
        counts = [len(images) for split in classes.values() for _, images in split]
        names = [name for split in classes.values() for name, _ in split]
        splits, first = {}, 0
        for split, found in classes.items():
            splits[split], first = tuple(range(first, first + len(found))), first + len(found)
        return cls(tuple(files), tuple(counts), tuple(names), splits, layout)


def check_channels(channels: int) -> int:
    if channels not in CHANNELS:
        raise ConfigError(f"channels: {channels}; allowed: 0 (the first image's), 1 (grey), 3 (colour)")
    return channels


def check_folder(root: Path) -> Path:
    """``root`` resolved; ConfigError naming data-dir where there is no such folder."""
    root = root.expanduser().resolve()
    if not root.is_dir():
        raise ConfigError(f"data-dir: no folder {root}")
    return root


def split_folder(root: Path, split: str) -> Path | None:
    return next((root / name for name in SPLIT_FOLDERS[split] if (root / name).is_dir()), None)


def class_folders(root: Path, layout: str) -> ImageListing | None:
    """Layout ``<root>/{train,val,test}/<class>/<image>`` (None where ``train/`` or ``test/`` is
    missing); ConfigError for a class folder without images."""
    folders = {split: split_folder(root, split) for split in SPLIT_FOLDERS}
    if folders["train"] is None or folders["test"] is None:
        return None
    found: dict[str, list[tuple[str, list[Path]]]] = {}
    for split, folder in folders.items():
        classes = sorted(p for p in folder.iterdir() if p.is_dir()) if folder else []
        if folder and not classes:
            raise ConfigError(f"data-dir: {folder} has no class folders (expected {folder}/<class>/<image>)")
        found[split] = []
        for path in classes:
            images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not images:
                raise ConfigError(f"data-dir: class folder {path} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            found[split].append((f"{folder.name}/{path.name}", images))
    return ImageListing.of(found, layout)


def decode_listing(listing: ImageListing, root: Path, name: str, image_size: int, channels: int) -> ImageClasses:
    """The listing's images, decoded once per machine into a cache file and mapped read only."""
    first_path = listing.files[0]
    first = open_image(first_path)
    size, channels = image_shape(first, first_path, image_size, check_channels(channels))
    key = fingerprint(listing.files, listing.layout, size, channels)
    path = cache_folder(root) / f"{name}-{size}px-{channels}ch-{key}.npy"

    def fill(array: np.ndarray, progress) -> None:
        for i, file in enumerate(listing.files):
            image = first if i == 0 else open_image(file)
            check_same_size(image, file, first, first_path, image_size)
            array[i] = decoded(image, size, channels)
            progress(i + 1)

    images = cached_images(path, (len(listing.files), channels, size, size), fill, f"{len(listing.files)} images of {name}")
    return images_of(listing, images)


def images_of(listing: ImageListing, images: np.ndarray) -> ImageClasses:
    """ImageClasses of a listing and its decoded images (each class its own group)."""
    return ImageClasses(
        images, listing.counts, tuple(range(len(listing.counts))), train=listing.splits["train"],
        test=listing.splits["test"], val=listing.splits.get("val", ()), names=listing.names,
    )


@functools.lru_cache(maxsize=None)
def load_image_folder(root: Path, image_size: int, channels: int) -> tuple[ImageClasses, str]:
    """(ImageClasses, what was found) of class folders under ``root`` (read once per process)."""
    root = check_folder(root)
    listing = class_folders(root, f"class folders in {root}")
    if listing is None:
        raise ConfigError(f"data-dir: no class folders in {root} (looked for {root}/train/<class>/<image> and "
                          f"{root}/test/<class>/<image>, and optionally val/)")
    return decode_listing(listing, root, "image-folder", image_size, channels), listing.layout


class ImageFolderTasks(FewShotImages):
    """N-way K-shot classification over a folder of class folders; heterogeneity ``none``,
    ``classes`` or ``clusters``. Keys data-dir, image-size, channels and those of digits."""

    HETEROGENEITY = ("none", "classes", "clusters")
    KEYS = (*FewShotImages.KEYS, "data-dir", "image-size", "channels")
    DATASET = ""  # the dataset's name before what was read, in ``source``
    source = ""  # what was read, for the run's first line

    @staticmethod
    def load(root: Path, image_size: int, channels: int) -> tuple[ImageClasses, str]:
        """(ImageClasses, what was found) under ``root``: the one hook a dataset of its own layouts overrides."""
        return load_image_folder(root, image_size, channels)

    @classmethod
    def from_config(cls, config: Any, num_agents: int) -> ImageFolderTasks:
        data, found = cls.load(Path(config.data_dir), config.image_size, config.channels)
        family = cls.from_data(data, config, num_agents)
        shape = f"{data.channels}x{data.image_size}x{data.image_size}"
        family.source = f"{cls.DATASET}{found}, {data.images.shape[0]} images, {shape}"
        return family
