"""Dataset specs → uint8 NHWC train and test images.

A spec is one of ``digits`` (embedded, no download), ``mnist``, ``fashion-mnist``, ``cifar10`` (through
torchvision), a path to an ``.npz`` with ``x_train`` / ``x_test``, or a path to a folder of images.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Union

import numpy as np

from waveletflow.errors import UserInputError
from waveletflow.images import read_image

DATASET_NAMES = ("digits", "mnist", "fashion-mnist", "cifar10")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageFolder:
    """Images of a folder read lazily, resized (shorter side) and centre-cropped to ``size``.

    Indexing with an int gives one uint8 HWC array; with an array of ints, a stacked NHWC array,
    so it can stand wherever an in-memory array is used.
    """

    def __init__(self, files: list[Path], size: int, channels: int = 3):
        self.files = list(files)
        self.size = size
        self.channels = channels

    def __len__(self) -> int:
        return len(self.files)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.files), self.size, self.size, self.channels)

    dtype = np.dtype(np.uint8)

    def _read(self, i: int) -> np.ndarray:
        return read_image(self.files[int(i)], self.channels, self.size)

    def __getitem__(self, idx) -> np.ndarray:
        if np.isscalar(idx):
            return self._read(int(idx))
        if isinstance(idx, slice):
            idx = range(*idx.indices(len(self)))
        return np.stack([self._read(int(i)) for i in np.asarray(idx).reshape(-1)])


ImageArray = Union[np.ndarray, ImageFolder]


@dataclass
class ImageDataset:
    """Train and test images (uint8 NHWC) with the bit depth of their pixel values."""

    name: str
    x_train: ImageArray
    x_test: ImageArray
    n_bits: int = 8
    max_value: int = 255  # the largest pixel value the data can hold, for display
    info: dict = field(default_factory=dict)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        _, h, w, c = self.x_train.shape
        return (c, h, w)


def _check_images(x: np.ndarray, where: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise UserInputError(f"{where}: expected uint8 images (N, H, W, C) with C = 1 or 3, got shape {x.shape}")
    if x.dtype != np.uint8:
        raise UserInputError(f"{where}: expected dtype uint8, got {x.dtype}")
    if len(x) == 0:
        raise UserInputError(f"{where}: holds no images")
    return x


def _digits() -> ImageDataset:
    """The 1,797 8×8 handwritten digits of the UCI repository (as shipped by scikit-learn), values 0..16.

    Stored as 5-bit pixels (0..31 of which 0..16 occur): the first 1,500 images train, the last 297 test.
    """
    with resources.files("waveletflow.data").joinpath("digits.csv.gz").open("rb") as fh:
        table = np.loadtxt(gzip.open(fh), delimiter=",", dtype=np.int64)
    x = table[:, :64].reshape(-1, 8, 8, 1).astype(np.uint8)
    return ImageDataset("digits", x[:1500], x[1500:], n_bits=5, max_value=16, info={"labels": table[:, 64]})


def _npz(path: Path) -> ImageDataset:
    try:
        with np.load(path) as f:
            keys = set(f.files)
            if not {"x_train", "x_test"} <= keys:
                raise UserInputError(f"{path}: an .npz dataset needs arrays 'x_train' and 'x_test', found {sorted(keys)}")
            x_train, x_test = f["x_train"], f["x_test"]
    except UserInputError:
        raise
    except Exception as exc:  # corrupt zip, pickled objects, ...
        raise UserInputError(f"{path}: not a readable .npz file ({exc})") from None
    x_train = _check_images(x_train, f"{path} x_train")
    x_test = _check_images(x_test, f"{path} x_test")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise UserInputError(f"{path}: x_train images are {x_train.shape[1:]} but x_test images are {x_test.shape[1:]}")
    return ImageDataset(path.stem, x_train, x_test)


def _folder(path: Path, image_size: int | None, channels: int, test_fraction: float = 0.1) -> ImageDataset:
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < 2:
        raise UserInputError(f"{path}: found {len(files)} images; a folder dataset needs at least 2")
    if image_size is None:
        raise UserInputError(f"{path}: a folder of images needs an image size (--image-size)")
    # a deterministic held-out split: every k-th file is a test image
    k = max(2, round(1 / test_fraction))
    test = files[::k]
    train = [f for i, f in enumerate(files) if i % k]
    return ImageDataset(path.name, ImageFolder(train, image_size, channels), ImageFolder(test, image_size, channels))


def _torchvision(name: str, root: str) -> ImageDataset:
    try:
        import torchvision.datasets as tvd
    except ImportError:
        raise UserInputError(
            f"dataset {name!r} needs torchvision (pip install torchvision) or an .npz file with x_train/x_test "
            "(uint8, NHWC); pass its path instead of the name"
        ) from None
    cls = {"mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10}[name]
    try:
        train, test = cls(root, train=True, download=True), cls(root, train=False, download=True)
    except Exception as exc:
        raise UserInputError(f"cannot get {name} into {root} ({exc}); download it or pass an .npz path") from None
    return ImageDataset(name, _check_images(np.asarray(train.data), name), _check_images(np.asarray(test.data), name))


def load_dataset(spec: str, *, image_size: int | None = None, channels: int = 3, root: str | None = None) -> ImageDataset:
    """Load a dataset from its spec string.

    Args:
        spec: ``digits``, ``mnist``, ``fashion-mnist``, ``cifar10``, a ``.npz`` path or a folder of images.
        image_size: side of the square images made from a folder (resize shorter side, centre crop).
        channels: 1 or 3, for folders of images.
        root: download folder for torchvision datasets (default ``$WAVELETFLOW_DATA`` or ``~/.cache/waveletflow``).

    >>> ds = load_dataset("digits")
    >>> ds.x_train.shape, ds.x_train.dtype, ds.n_bits
    ((1500, 8, 8, 1), dtype('uint8'), 5)
    """
    if spec == "digits":
        return _digits()
    if spec in DATASET_NAMES:
        root = root or os.environ.get("WAVELETFLOW_DATA", str(Path.home() / ".cache" / "waveletflow"))
        return _torchvision(spec, root)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _folder(path, image_size, channels)
    if path.suffix == ".npz":
        if not path.is_file():
            raise UserInputError(f"dataset file {spec} does not exist")
        return _npz(path)
    if not path.exists():
        raise UserInputError(
            f"unknown dataset {spec!r}: give one of {', '.join(DATASET_NAMES)}, an .npz file or a folder of images"
        )
    raise UserInputError(f"{spec}: a dataset must be an .npz file or a folder of images")
