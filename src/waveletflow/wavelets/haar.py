"""One-level Haar transforms under three normalisations, and multi-level pyramids.

For each 2×2 block ``a b / c d`` of each channel::

    orthonormal  low = (a+b+c+d)/2   details = (a+b-c-d)/2, (a-b+c-d)/2, (a-b-c+d)/2
    average      low = (a+b+c+d)/4   details as orthonormal           log-det log(1/2) per low value
    unimodular   low = (a+b+c+d)/4   details = orthonormal · 2/c0, c0 = 2^(2/3)       log-det 0

Detail channel ``3c + k`` holds, for input channel ``c``, PyWavelets' ``cH``, ``cV``, ``cD`` for k = 0, 1, 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from waveletflow.errors import UserInputError

CONVENTIONS = ("orthonormal", "average", "unimodular")

# (scale of the low-pass, scale of the details) applied on top of the orthonormal transform.
SCALES = {
    "orthonormal": (1.0, 1.0),
    "average": (0.5, 1.0),
    "unimodular": (0.5, 2.0 ** (1.0 / 3.0)),  # 2 / 2^(2/3)
}
# log|det| per low-pass value (one 2×2 block), exact by construction.
LOGDET_PER_LOW = {"orthonormal": 0.0, "average": -math.log(2.0), "unimodular": 0.0}


def check_convention(convention: str) -> None:
    """Raise :class:`~waveletflow.errors.UserInputError` unless ``convention`` is one of :data:`CONVENTIONS`."""
    if convention not in CONVENTIONS:
        raise UserInputError(f"unknown Haar convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")


def haar_logdet_per_low(convention: str) -> float:
    """log|det| of one Haar step per low-pass value (per 2×2 block of one channel)."""
    check_convention(convention)
    return LOGDET_PER_LOW[convention]


def haar(x: Tensor, convention: str = "average") -> tuple[Tensor, Tensor, Tensor]:
    """One Haar step.

    Args:
        x: (N, C, H, W) with H and W even.
    Returns:
        ``(low, detail, logdet)``: low (N, C, H/2, W/2), detail (N, 3C, H/2, W/2) with channel
        ``3c + k`` = cH, cV, cD of input channel c, and logdet (N,) the exact log|det| of the map.

    >>> low, detail, logdet = haar(torch.ones(2, 1, 4, 4))
    >>> low.shape, detail.shape, torch.allclose(logdet, torch.tensor(4 * math.log(0.5)))
    (torch.Size([2, 1, 2, 2]), torch.Size([2, 3, 2, 2]), True)
    """
    check_convention(convention)
    if x.dim() != 4:
        raise UserInputError(f"haar expects a 4-D tensor (N, C, H, W), got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    if h % 2 or w % 2:
        raise UserInputError(f"haar needs even height and width, got {h}×{w}")
    blocks = x.reshape(n, c, h // 2, 2, w // 2, 2)
    a = blocks[:, :, :, 0, :, 0]
    b = blocks[:, :, :, 0, :, 1]
    cc = blocks[:, :, :, 1, :, 0]
    d = blocks[:, :, :, 1, :, 1]
    s_low, s_det = SCALES[convention]
    low = (a + b + cc + d) * (0.5 * s_low)
    k = 0.5 * s_det
    ch = (a + b - cc - d) * k
    cv = (a - b + cc - d) * k
    cd = (a - b - cc + d) * k
    detail = torch.stack((ch, cv, cd), dim=2).reshape(n, 3 * c, h // 2, w // 2)
    logdet = torch.full((n,), c * (h // 2) * (w // 2) * LOGDET_PER_LOW[convention], dtype=x.dtype, device=x.device)
    return low, detail, logdet


def inverse_haar(low: Tensor, detail: Tensor, convention: str = "average") -> Tensor:
    """Exact inverse of :func:`haar`: ``inverse_haar(*haar(x)[:2]) == x``."""
    check_convention(convention)
    if low.dim() != 4 or detail.dim() != 4:
        raise UserInputError("inverse_haar expects 4-D tensors (N, C, H, W) and (N, 3C, H, W)")
    n, c, h, w = low.shape
    if tuple(detail.shape) != (n, 3 * c, h, w):
        raise UserInputError(f"detail must have shape {(n, 3 * c, h, w)}, got {tuple(detail.shape)}")
    s_low, s_det = SCALES[convention]
    lo = low / s_low
    det = (detail / s_det).reshape(n, c, 3, h, w)
    ch, cv, cd = det[:, :, 0], det[:, :, 1], det[:, :, 2]
    a = (lo + ch + cv + cd) * 0.5
    b = (lo + ch - cv - cd) * 0.5
    cc = (lo - ch + cv - cd) * 0.5
    d = (lo - ch - cv + cd) * 0.5
    top = torch.stack((a, b), dim=-1)  # (n, c, h, w, 2)
    bottom = torch.stack((cc, d), dim=-1)
    x = torch.stack((top, bottom), dim=3)  # (n, c, h, 2, w, 2)
    return x.reshape(n, c, 2 * h, 2 * w)


@dataclass
class Pyramid:
    """A Haar pyramid: the base image, detail bands coarse to fine, and the total log-det (N,)."""

    base: Tensor
    details: list[Tensor]
    logdet: Tensor


def _as_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    return int(size[0]), int(size[1])


def pyramid_sizes(image_size: int | tuple[int, int], base_size: int | tuple[int, int]) -> list[tuple[int, int]]:
    """Sizes from the base to the full image, coarse to fine; raises when the base cannot be reached.

    >>> pyramid_sizes(28, 7)
    [(7, 7), (14, 14), (28, 28)]
    """
    h, w = _as_hw(image_size)
    bh, bw = _as_hw(base_size)
    if bh < 1 or bw < 1:
        raise UserInputError(f"base size must be positive, got {bh}×{bw}")
    sizes = [(h, w)]
    while (h, w) != (bh, bw):
        if h <= bh or w <= bw or h % 2 or w % 2:
            raise UserInputError(
                f"an image of {sizes[0][0]}×{sizes[0][1]} cannot be halved down to a base of {bh}×{bw} "
                f"(stuck at {h}×{w}); the base must be the image size divided by a power of two"
            )
        h, w = h // 2, w // 2
        sizes.append((h, w))
    return sizes[::-1]
