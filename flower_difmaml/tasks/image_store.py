"""Decoded images as one uint8 file that every process maps: read once per machine.

A dataset of image files (JPEG, PNG) is decoded once into ``<name>-<fingerprint>.npy``
(uint8, (M, C, S, S)) in a cache folder: ``.flower-difmaml-cache`` next to the data, or
``~/.cache/flower-difmaml`` where the data folder is read only. Every process that needs the
images (the ServerApp, each Ray actor, the vectorised engine) maps that file read only
(``np.load(mmap_mode="r")``), so the operating system holds its pages once for all of them,
and a task reads only the images it draws. The fingerprint hashes the files' names, sizes and
modification times and the asked size and channels: a changed dataset is decoded again.

The first process to need a file decodes it under a lock (the others wait for it, then map
it), showing progress on stderr, into a temporary file that is renamed when complete: a
decode stopped half way leaves no cache behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ConfigError, one_line

CACHE_FOLDER = ".flower-difmaml-cache"
HOME_CACHE = Path("~/.cache/flower-difmaml")
PROGRESS_SECONDS = 5.0  # a progress line at most this often while decoding
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def fingerprint(files: Iterable[Path], *parts: object) -> str:
    """16 hex digits of a hash of each file's path, size and modification time, and ``parts``."""
    digest = hashlib.sha1(repr(parts).encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def cache_folder(data_root: Path) -> Path:
    """``<data_root>/.flower-difmaml-cache`` where it can be written, else ``~/.cache/flower-difmaml``."""
    folder = data_root / CACHE_FOLDER
    if (folder.is_dir() and os.access(folder, os.W_OK)) or os.access(data_root, os.W_OK):
        return folder
    return HOME_CACHE.expanduser()


def channels_of(mode: str) -> int:
    """1 for a grey PIL image mode, 3 for any other (colour, palette)."""
    return 1 if mode in GREY_MODES else 3


def decoded(image: Image.Image, size: int, channels: int) -> np.ndarray:
    """(channels, size, size) uint8 of a PIL image: converted to grey ("L") or "RGB", resized
    with Lanczos where it is not ``size`` x ``size`` already."""
    image = image.convert("L" if channels == 1 else "RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.LANCZOS)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def open_image(path: Path, key: str = "data-dir") -> Image.Image:
    """The image at ``path``, fully read; ConfigError naming the file where it cannot be decoded."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise ConfigError(f"{key}: cannot decode image {path} ({one_line(error)})") from None


def image_shape(first: Image.Image, first_path: Path, image_size: int, channels: int) -> tuple[int, int]:
    """(size, channels) the cache holds: key ``image-size`` (0: the first image's, which must be
    square) and key ``channels`` (0: the first image's, 1 for grey, 3 for colour)."""
    if image_size == 0 and first.size[0] != first.size[1]:
        raise ConfigError(f"image-size: 0 keeps the images' size, but {first_path} is {first.size[0]}x{first.size[1]} "
                          "(not square); allowed: image-size > 0 (every image resized to it)")
    return image_size or first.size[0], channels or channels_of(first.mode)


def check_same_size(image: Image.Image, path: Path, first: Image.Image, first_path: Path, image_size: int) -> None:
    """With image-size 0 (no resize) every image must have the first one's size."""
    if image_size == 0 and image.size != first.size:
        raise ConfigError(
            f"image-size: 0 keeps the images' size, but {path} is {image.size[0]}x{image.size[1]} and {first_path} "
            f"{first.size[0]}x{first.size[1]}; allowed: image-size > 0 (every image resized to it)"
        )


class Progress:
    """``decoding <what>: i/n images (p %)`` on stderr, at most every PROGRESS_SECONDS, and at the end."""

    def __init__(self, what: str, total: int, write: Callable[[str], None] | None = None) -> None:
        self.what, self.total, self.start = what, total, time.perf_counter()
        self.write = write or (lambda line: print(line, file=sys.stderr, flush=True))
        self.last = self.start

    def __call__(self, done: int) -> None:
        now = time.perf_counter()
        if now - self.last >= PROGRESS_SECONDS or done == self.total:
            self.last = now
            self.write(f"flower-difmaml: decoding {self.what}: {done}/{self.total} images "
                       f"({100 * done // max(self.total, 1)} %), {now - self.start:.0f} s")


def cached_images(
    path: Path, shape: Sequence[int], fill: Callable[[np.ndarray, Callable[[int], None]], None], what: str,
    write: Callable[[str], None] | None = None,
) -> np.ndarray:
    """The uint8 array of ``shape`` at ``path``, mapped read only; made first where missing by
    ``fill(array, progress)`` (which writes every row and calls ``progress(rows done)``)."""
    shape = tuple(int(s) for s in shape)
    if path.exists():
        return _mapped(path, shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process decoding the same file: wait for it
        if path.exists():
            return _mapped(path, shape)
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        say = write or (lambda line: print(line, file=sys.stderr, flush=True))
        say(f"flower-difmaml: decoding {what} once into {path} (later runs map it)")
        try:
            array = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.uint8, shape=shape)
            fill(array, Progress(what, shape[0], say))
            array.flush()
            del array
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    return _mapped(path, shape)


def _mapped(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    array = np.load(path, mmap_mode="r")
    if array.shape != shape or array.dtype != np.uint8:
        raise ConfigError(f"data-dir: the cache file {path} holds {array.shape} {array.dtype}, expected {shape} uint8; "
                          "delete it to decode the images again")
    return array
