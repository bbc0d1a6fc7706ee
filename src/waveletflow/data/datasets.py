"""Dataset specs → uint8 NHWC train and test images.

A spec is one of ``digits`` (embedded, no download), ``mnist``, ``fashion-mnist``, ``cifar10`` (through
torchvision), a path to an ``.npz`` with ``x_train`` / ``x_test``, or a path to a folder of images.
"""

from __future__ import annotations

import gzip
import logging
import os
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

import numpy as np

from waveletflow.errors import UserInputError
from waveletflow.data.folder import Crops, ImageArray, ImageFolder

DATASET_NAMES = ("digits", "mnist", "fashion-mnist", "cifar10")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

log = logging.getLogger("waveletflow")


@dataclass
class ImageDataset:
    """Train and test images (uint8 NHWC) with the bit depth of their pixel values."""

    name: str
    x_train: ImageArray
    x_test: ImageArray
    n_bits: int = 8
    max_value: int = 255  # the largest pixel value the data can hold, for display
    info: dict = field(default_factory=dict)
    #: class labels of the images, where the data has them (an .npz's ``y_train``/``y_test``, digits, the class
    #: subfolders of an image folder); the sample-quality metric trains its feature classifier on them
    y_train: np.ndarray | None = None
    y_test: np.ndarray | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        _, h, w, c = self.x_train.shape
        return (c, h, w)

    def fingerprint(self) -> str:
        """A short hash that tells datasets apart: the split sizes, the bit depth and the pixels of a few images
        of each split (at fixed positions; the whole images under any crop). Kept in a run's ``run.json`` so that
        resuming on other data is noticed.

        >>> load_dataset("digits").fingerprint() == load_dataset("digits").fingerprint()
        True
        """
        import hashlib

        h = hashlib.sha256(f"{self.n_bits}".encode())
        for split in (self.x_train, self.x_test):
            images = split.images if isinstance(split, Crops) else split
            n = len(images)
            h.update(f"|{n}|{tuple(images.shape[1:])}".encode())
            for i in sorted({0, n // 3, (2 * n) // 3, n - 1}):
                image = np.ascontiguousarray(images[i])
                h.update(f"{image.shape}".encode())
                h.update(image.tobytes())
        return h.hexdigest()[:16]


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
    y = table[:, 64]
    return ImageDataset("digits", x[:1500], x[1500:], n_bits=5, max_value=16, info={"labels": y},
                        y_train=y[:1500], y_test=y[1500:])


def _npz(path: Path, prefix: str | None = None) -> ImageDataset:
    train_key, test_key = (f"{prefix}_train", f"{prefix}_test") if prefix else ("x_train", "x_test")
    with open(path, "rb") as fh:
        if fh.read(4) not in (b"PK\x03\x04", b"PK\x05\x06"):  # every .npz is a zip archive
            raise UserInputError(f"{path} is not an .npz file (not a zip archive of arrays; numpy.savez writes them)")
    try:
        with np.load(path) as f:
            keys = set(f.files)
            if not {train_key, test_key} <= keys:
                raise UserInputError(f"{path}: an .npz dataset needs arrays {train_key!r} and {test_key!r}, "
                                     f"found {sorted(keys)}")
            x_train, x_test = f[train_key], f[test_key]
            y_keys = ("y_train", "y_test") if not prefix else (f"{prefix}_y_train", f"{prefix}_y_test")
            y_train, y_test = (f[k] if k in keys else None for k in y_keys)
    except UserInputError:
        raise
    except Exception as exc:  # corrupt zip, pickled objects, ...
        raise UserInputError(f"{path}: not a readable .npz file ({exc})") from None
    x_train = _check_images(x_train, f"{path} x_train")
    x_test = _check_images(x_test, f"{path} x_test")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise UserInputError(f"{path}: x_train images are {x_train.shape[1:]} but x_test images are {x_test.shape[1:]}")
    y_train, y_test = _labels(y_train, len(x_train), f"{path} y_train"), _labels(y_test, len(x_test), f"{path} y_test")
    return ImageDataset(path.stem + (f":{prefix}" if prefix else ""), x_train, x_test, y_train=y_train, y_test=y_test)


def _labels(y: np.ndarray | None, n: int, where: str) -> np.ndarray | None:
    """Class labels as int64, one per image; labels that are not one whole number per image are ignored (with a
    note), as the images are still usable without them."""
    if y is None:
        return None
    if y.ndim != 1 or len(y) != n or not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)):
        log.info("%s: %s labels of shape %s for %d images ignored", where, y.dtype, y.shape, n)
        return None
    return y.astype(np.int64)


def _image_files(folder: Path) -> list[Path]:
    """The image files under ``folder`` (by suffix, hidden files skipped), sorted; other files get a note."""
    files = sorted(p for p in folder.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    others = [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
    if others:
        log.info("%s: %d file%s without an image suffix skipped (e.g. %s)", folder, len(others),
                 "" if len(others) == 1 else "s", others[0].name)
    return [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]


def _image_sizes(files: list[Path]) -> list[tuple[int, int]]:
    """(height, width) of each file from its header; a file that is not a readable image is an error."""
    from PIL import Image

    sizes = []
    for f in files:
        try:
            with Image.open(f) as im:
                w, h = im.size
        except Exception as exc:  # noqa: BLE001 - Pillow raises several kinds for files that are not images
            raise UserInputError(f"{f} is not an image that can be read ({type(exc).__name__})") from None
        sizes.append((h, w))
    return sizes


def _folder(path: Path, image_size: int | None, channels: int, crop: int | None,
            test_fraction: float = 0.1) -> ImageDataset:
    """A folder of images: ``train/`` and ``test/`` subfolders when both exist, else every tenth file is a test
    image. Without ``image_size`` the images are used at their own size, which must be one size unless ``crop``
    takes fixed-size crops of them."""
    if (path / "train").is_dir() and (path / "test").is_dir():
        train, test = _image_files(path / "train"), _image_files(path / "test")
        layout = "train/ and test/ folders"
        for name, files, least in (("train", train, 2), ("test", test, 1)):
            if len(files) < least:
                raise UserInputError(f"{path / name} holds {len(files)} image{'' if len(files) == 1 else 's'}; "
                                     f"it needs at least {least}")
    else:
        files = _image_files(path)
        if len(files) < 3:
            raise UserInputError(f"{path}: found {len(files)} image{'' if len(files) == 1 else 's'}; a folder "
                                 "dataset needs at least 3 (or train/ and test/ subfolders)")
        k = max(2, round(1 / test_fraction))  # a deterministic held-out split: every k-th file is a test image
        train, test = [f for i, f in enumerate(files) if i % k], files[::k]
        layout = f"every {k}th file held out for testing"
    sizes = _image_sizes(train + test)
    info = {"layout": layout, "sizes": sorted(set(sizes))}
    if image_size is not None:
        check = ImageFolder(train, image_size, channels), ImageFolder(test, image_size, channels)
    else:
        hw = sizes[0] if len(set(sizes)) == 1 else None
        if hw is None and crop is None:
            (h1, w1), i = sizes[0], next(i for i, s in enumerate(sizes) if s != sizes[0])
            h2, w2 = sizes[i]
            both = train + test
            raise UserInputError(f"{path}: images of different sizes ({both[0].name} is {w1}×{h1}, {both[i].name} is "
                                 f"{w2}×{h2}); give --image-size to resize them or --crop to train on crops")
        check = ImageFolder(train, None, channels, hw), ImageFolder(test, None, channels, hw)
    if crop is not None and image_size is None:
        small = [(f, s) for f, s in zip(train + test, sizes) if min(s) < crop]
        if small:
            (f, (h, w)) = small[0]
            raise UserInputError(f"{f} is {w}×{h}, smaller than the crop {crop}×{crop} "
                                 f"({len(small)} image{'' if len(small) == 1 else 's'} too small)")
    labels = _folder_labels(path, train, test) if layout.startswith("train/") else None
    if labels is not None:
        info["classes"] = labels[2]
    return ImageDataset(path.name, *check, info=info, y_train=None if labels is None else labels[0],
                        y_test=None if labels is None else labels[1])


def _folder_labels(path: Path, train: list[Path], test: list[Path]):
    """Labels from class subfolders (``train/<class>/…`` and ``test/<class>/…``, at least two classes, every image
    in one), as ``(y_train, y_test, class names)``; None for any other layout."""
    def classes(root: Path, files: list[Path]) -> list[str] | None:
        parts = [f.relative_to(root).parts for f in files]
        return None if any(len(p) != 2 for p in parts) else [p[0] for p in parts]

    a, b = classes(path / "train", train), classes(path / "test", test)
    if a is None or b is None or len(set(a)) < 2:
        return None
    names = sorted(set(a) | set(b))
    index = {c: i for i, c in enumerate(names)}
    return (np.array([index[c] for c in a], dtype=np.int64), np.array([index[c] for c in b], dtype=np.int64), names)


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
    return ImageDataset(name, _check_images(np.asarray(train.data), name), _check_images(np.asarray(test.data), name),
                        y_train=np.asarray(train.targets, dtype=np.int64), y_test=np.asarray(test.targets, dtype=np.int64))


def load_dataset(spec: str, *, image_size: int | None = None, crop: int | None = None, channels: int = 3,
                 root: str | None = None) -> ImageDataset:
    """Load a dataset from its spec string.

    Args:
        spec: ``digits``, ``mnist``, ``fashion-mnist``, ``cifar10``, a ``.npz`` path (``FILE.npz:P`` reads
            the arrays ``P_train`` and ``P_test`` instead of ``x_train`` and ``x_test``) or a folder of images
            (``train/`` and ``test/`` subfolders when both exist, else every tenth file held out for testing).
        image_size: resize the images of a folder (shorter side, bicubic) and centre-crop them to this side.
            Without it, a folder's images are used at their own size.
        crop: use ``crop``×``crop`` crops of the images, pixel values unchanged: random ones for training
            (:meth:`Crops.random`), centre crops for validation and test.
        channels: 1 or 3, for folders of images.
        root: download folder for torchvision datasets (default ``$WAVELETFLOW_DATA`` or ``~/.cache/waveletflow``).

    >>> ds = load_dataset("digits")
    >>> ds.x_train.shape, ds.x_train.dtype, ds.n_bits
    ((1500, 8, 8, 1), dtype('uint8'), 5)
    """
    if image_size is not None and image_size < 1:
        raise UserInputError(f"--image-size must be at least 1, got {image_size}")
    if crop is not None and crop < 1:
        raise UserInputError(f"--crop must be at least 1, got {crop}")
    data = _load(spec, image_size, channels, crop, root)
    _, h, w, _ = data.x_train.shape  # None for a folder of mixed sizes, each of which _folder checked
    if image_size is not None and not Path(spec).expanduser().is_dir() and (h, w) != (image_size, image_size):
        raise UserInputError(f"--image-size {image_size} resizes the images of a folder; {spec} holds {w}×{h} "
                             f"images, which are used at their own size")
    if crop is None:
        return data
    if h is not None and min(h, w) < crop:
        raise UserInputError(f"{spec}: its images are {w}×{h}, smaller than the crop {crop}×{crop}")
    return replace(data, x_train=Crops(data.x_train, crop), x_test=Crops(data.x_test, crop),
                   info={**data.info, "crop": crop})


def _load(spec: str, image_size: int | None, channels: int, crop: int | None, root: str | None) -> ImageDataset:
    if spec == "digits":
        return _digits()
    if spec in DATASET_NAMES:
        root = root or os.environ.get("WAVELETFLOW_DATA", str(Path.home() / ".cache" / "waveletflow"))
        return _torchvision(spec, root)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _folder(path, image_size, channels, crop)
    prefix = None
    if ".npz:" in spec:  # FILE.npz:PREFIX reads PREFIX_train and PREFIX_test
        file, prefix = spec.rsplit(":", 1)
        path = Path(file).expanduser()
    if path.suffix == ".npz":
        if not path.is_file():
            raise UserInputError(f"dataset file {path} does not exist")
        return _npz(path, prefix)
    if not path.exists():
        raise UserInputError(
            f"unknown dataset {spec!r}: give one of {', '.join(DATASET_NAMES)}, an .npz file or a folder of images"
        )
    raise UserInputError(f"{spec}: a dataset must be an .npz file or a folder of images")
