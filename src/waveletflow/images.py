"""Image files: grids of samples as PNG, and reading image files into uint8 pixel values."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from waveletflow.errors import UserInputError
from waveletflow.rundir import write_files


def to_display(x: np.ndarray, max_value: int) -> np.ndarray:
    """uint8 pixel values in 0..max_value → 0..255 for viewing."""
    if max_value == 255:
        return x.astype(np.uint8)
    return np.clip(np.rint(x.astype(np.float64) * 255.0 / max_value), 0, 255).astype(np.uint8)


def from_display(x: np.ndarray, max_value: int) -> np.ndarray:
    """Inverse of :func:`to_display`."""
    if max_value == 255:
        return x.astype(np.uint8)
    return np.clip(np.rint(x.astype(np.float64) * max_value / 255.0), 0, max_value).astype(np.uint8)


def image_grid(images: np.ndarray, ncols: int | None = None, pad: int = 1, scale: int = 1) -> np.ndarray:
    """NHWC uint8 images → one HWC grid image (nearest-neighbour upscaled by ``scale``)."""
    n, h, w, c = images.shape
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, ncols)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w] = images[i]
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    return grid


def encode_image(image: np.ndarray, path: str | Path) -> bytes:
    """uint8 HWC ``image`` encoded in the format that ``path``'s extension names (PNG, JPEG, ...)."""
    import io

    from PIL import Image

    Image.init()
    fmt = Image.registered_extensions().get(Path(path).suffix.lower(), "PNG")
    arr = image[:, :, 0] if image.shape[-1] == 1 else image
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def save_png(path: str | Path, image: np.ndarray) -> None:
    """Write ``image`` (uint8 HWC) to ``path`` in the format of its extension, atomically (an existing file is
    replaced only by a complete one)."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise UserInputError(f"folder {path.parent} does not exist")
    write_files({path: encode_image(image, path)})


def read_image(path: str | Path, channels: int, size: int | None = None) -> np.ndarray:
    """An image file (PNG, JPEG, ... anything Pillow reads) as uint8 HWC with ``channels`` channels.

    With ``size``, the shorter side is resized to ``size`` (bicubic) and the centre ``size``×``size`` square kept.
    """
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"image {path} does not exist")
    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            if size is not None:
                w, h = im.size
                scale = size / min(w, h)
                if scale != 1:
                    im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
                w, h = im.size
                left, top = (w - size) // 2, (h - size) // 2
                im = im.crop((left, top, left + size, top + size))
            arr = np.asarray(im, dtype=np.uint8)
    except OSError as exc:
        raise UserInputError(f"cannot read image {path} ({exc})") from None
    return arr[:, :, None] if arr.ndim == 2 else arr
