"""Image sets that stand where an in-memory uint8 NHWC array does: a folder's images read lazily
(:class:`ImageFolder`), and fixed-size crops of images of any size (:class:`Crops`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from waveletflow.errors import UserInputError
from waveletflow.images import read_image

if TYPE_CHECKING:
    import torch


#: decoded images an :class:`ImageFolder` keeps in memory (bytes; 132 photographs of 1024² take 415 MB)
IMAGE_CACHE_BYTES = 2 * 1024**3


class ImageFolder:
    """Images of a folder read lazily: at their own size (``size`` None; every file must then be ``hw``), or
    resized (shorter side, bicubic) and centre-cropped to ``size``×``size``.

    Indexing with an int gives one uint8 HWC array; with an array of ints, a stacked NHWC array,
    so it can stand wherever an in-memory array is used. With mixed sizes (``hw`` None) only single images can
    be read (see :class:`Crops`).
    """

    def __init__(self, files: list[Path], size: int | None, channels: int = 3, hw: tuple[int, int] | None = None,
                 cache_bytes: int | None = None):
        self.files = list(files)
        self.size = size
        self.channels = channels
        self.hw = (size, size) if size is not None else hw
        self.cache_bytes = IMAGE_CACHE_BYTES if cache_bytes is None else int(cache_bytes)
        self._cache: dict[int, np.ndarray] = {}
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self.files)

    @property
    def shape(self) -> tuple[int, int | None, int | None, int]:
        h, w = self.hw if self.hw is not None else (None, None)
        return (len(self.files), h, w, self.channels)

    dtype = np.dtype(np.uint8)

    def _read(self, i: int) -> np.ndarray:
        """One decoded image; decoded images are kept in memory up to ``cache_bytes`` in all (read-only)."""
        i = int(i)
        image = self._cache.get(i)
        if image is None:
            image = read_image(self.files[i], self.channels, self.size)
            if self._cached_bytes + image.nbytes <= self.cache_bytes:
                image.setflags(write=False)
                self._cache[i] = image
                self._cached_bytes += image.nbytes
        return image

    def __getstate__(self) -> dict:  # worker processes decode (and cache) their own copies
        return {**self.__dict__, "_cache": {}, "_cached_bytes": 0}

    def __getitem__(self, idx) -> np.ndarray:
        if np.isscalar(idx):
            return self._read(int(idx))
        if isinstance(idx, slice):
            idx = range(*idx.indices(len(self)))
        images = [self._read(int(i)) for i in np.asarray(idx).reshape(-1)]
        if len({im.shape for im in images}) > 1:
            raise UserInputError(f"images of different sizes cannot form a batch ({self.files[0].parent}); "
                                 "give --image-size or --crop")
        return np.stack(images)


class Crops:
    """Fixed-size crops of a set of images (an array or an :class:`ImageFolder`, sizes may differ), pixel values
    unchanged: indexing gives the centre crops (validation, test); :meth:`random` draws random ones (training)."""

    def __init__(self, images: "ImageArray", size: int):
        self.images, self.size = images, int(size)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.images), self.size, self.size, self.images.shape[-1])

    dtype = np.dtype(np.uint8)

    def _crop(self, i: int, pick) -> np.ndarray:
        image = self.images[int(i)]
        h, w = image.shape[:2]
        if h < self.size or w < self.size:
            name = self.images.files[int(i)] if isinstance(self.images, ImageFolder) else f"image {int(i)}"
            raise UserInputError(f"{name} is {w}×{h}, smaller than the crop {self.size}×{self.size}")
        top, left = pick(h - self.size, w - self.size)
        return image[top : top + self.size, left : left + self.size]

    def __getitem__(self, idx) -> np.ndarray:
        centre = lambda dh, dw: (dh // 2, dw // 2)  # noqa: E731
        if np.isscalar(idx):
            return self._crop(int(idx), centre)
        if isinstance(idx, slice):
            idx = range(*idx.indices(len(self)))
        return np.stack([self._crop(int(i), centre) for i in np.asarray(idx).reshape(-1)])

    def random(self, idx, generator: torch.Generator) -> np.ndarray:
        """Random crops of the images ``idx``, one position per image drawn from ``generator``."""
        import torch

        def pick(dh: int, dw: int) -> tuple[int, int]:
            return (int(torch.randint(0, dh + 1, (1,), generator=generator)),
                    int(torch.randint(0, dw + 1, (1,), generator=generator)))

        return np.stack([self._crop(int(i), pick) for i in np.asarray(idx).reshape(-1)])


ImageArray = Union[np.ndarray, ImageFolder, Crops]
