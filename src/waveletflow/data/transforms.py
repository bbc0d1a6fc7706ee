"""Turning uint8 images into model inputs and back."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from waveletflow.errors import UserInputError


def _check_bits(n_bits: int) -> None:
    if not 1 <= int(n_bits) <= 8:
        raise UserInputError(f"n_bits must be between 1 and 8, got {n_bits}")


def to_tensor(x: np.ndarray | Tensor) -> Tensor:
    """Pixels: uint8 NHWC (numpy or torch; any integer type) → integer NCHW tensor (int64 values, no scaling).

    Float images are refused with one line (they are continuous images, not pixel values).

    >>> to_tensor(np.zeros((2, 4, 4, 3), np.uint8)).shape
    torch.Size([2, 3, 4, 4])
    """
    t = torch.as_tensor(np.asarray(x)) if not isinstance(x, Tensor) else x
    if t.is_floating_point() or t.is_complex():
        raise UserInputError("expected pixel values: integer images (N, H, W, C) such as a dataset's uint8 arrays, "
                             f"got {t.dtype} (float (N, C, H, W) images in [0, 1) go to log_prob and encode; "
                             "model.to_uint8 turns them into pixel values)")
    if t.dim() != 4:
        raise UserInputError(f"expected images of shape (N, H, W, C), got shape {tuple(t.shape)}")
    return t.permute(0, 3, 1, 2).to(torch.int64)


def reduce_bits(k: Tensor, from_bits: int, to_bits: int) -> Tensor:
    """Drop the low bits of integer pixels (Glow's ``n_bits`` reduction): ``k >> (from_bits − to_bits)``."""
    _check_bits(to_bits)
    if to_bits > from_bits:
        raise UserInputError(f"cannot raise the bit depth from {from_bits} to {to_bits}")
    return torch.div(k, 2 ** (from_bits - to_bits), rounding_mode="floor")


def dequantize(k: Tensor, n_bits: int, generator: torch.Generator | None = None, dtype=torch.float32) -> Tensor:
    """Uniform dequantisation ``x = (k + u) / 2^n_bits`` with ``u ~ U(0, 1)``; x lies in ``[0, 1)``.

    >>> x = dequantize(torch.tensor([[[[0, 31]]]]), n_bits=5)
    >>> bool((x >= 0).all() and (x < 1).all())
    True
    """
    _check_bits(n_bits)
    if int(k.min()) < 0 or int(k.max()) >= 2**n_bits:
        raise UserInputError(f"pixel values must lie in 0..{2**n_bits - 1} for n_bits={n_bits}")
    u = torch.rand(k.shape, generator=generator, dtype=dtype, device=k.device)
    x = (k.to(dtype) + u) / 2**n_bits
    # float rounding can land on the upper edge (k + 1)/2^n of the bin: keep every value inside its own bin
    upper = torch.nextafter((k + 1).to(dtype) / 2**n_bits, torch.zeros((), dtype=dtype, device=k.device))
    return torch.minimum(x, upper)


#: blocks of at most this many pixels get the exact mean of their uniform dequantisation draws
EXACT_BLOCK_NOISE = 16


def block_means(k: Tensor, steps: int) -> Tensor:
    """Integer NCHW pixels → the mean of every 2^steps × 2^steps block (float64, exact), a few images at a time.

    >>> block_means(torch.tensor([[[[0, 1], [2, 4]]]]), 1)
    tensor([[[[1.7500]]]], dtype=torch.float64)
    """
    f = 2**steps
    if k.shape[-2] % f or k.shape[-1] % f:
        raise UserInputError(f"{k.shape[-2]}×{k.shape[-1]} images cannot be halved {steps} times")
    step = max(1, 2**24 // max(1, k[0].numel()))
    return torch.cat([torch.nn.functional.avg_pool2d(k[i : i + step].to(torch.float64), f)
                      for i in range(0, k.shape[0], step)])


def dequantize_means(means: Tensor, n_bits: int, block: int, generator: torch.Generator | None = None,
                     dtype=torch.float32) -> Tensor:
    """The block means of uniformly dequantised pixels, from the block means ``means`` of their integer values
    over blocks of ``block`` pixels: ``(m + ū) / 2^n_bits`` with ``ū`` the mean of ``block`` U(0, 1) draws.

    ``ū`` is exactly that mean for blocks of up to :data:`EXACT_BLOCK_NOISE` pixels (``block = 1`` is
    :func:`dequantize`); for larger blocks it is drawn from the normal with the same mean ½ and variance
    1/(12·block) (the central limit of the Irwin–Hall law: at 64 draws the two distribution functions differ
    by less than 10⁻³, on a scale of a 28th of a grey level), clipped to [0, 1]. Training data of coarse
    levels is drawn this way; evaluation always dequantises every pixel.
    """
    _check_bits(n_bits)
    if block == 1:
        return dequantize(means.to(torch.int64), n_bits, generator, dtype)
    if block <= EXACT_BLOCK_NOISE:
        u = torch.rand((*means.shape, block), generator=generator, dtype=torch.float64).mean(dim=-1)
    else:
        u = (0.5 + torch.randn(means.shape, generator=generator, dtype=torch.float64) / math.sqrt(12 * block))
        u = u.clamp(0.0, 1.0)
    x = ((means.to(torch.float64) + u.to(means.device)) / 2**n_bits).to(dtype)
    return x.clamp(max=torch.nextafter(torch.ones((), dtype=dtype), torch.zeros((), dtype=dtype)).item())


def quantize(x: Tensor, n_bits: int) -> Tensor:
    """Inverse of dequantisation: the bin index ``floor(x · 2^n_bits)`` clipped to the valid range (int64)."""
    _check_bits(n_bits)
    return torch.floor(x * 2**n_bits).clamp(0, 2**n_bits - 1).to(torch.int64)


def random_flip(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Flip each image horizontally with probability 1/2 (NCHW)."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    out = x.clone()
    out[flip] = out[flip].flip(-1)
    return out


def periodic_pad(x: Tensor, margin: int) -> Tensor:
    """Images (N, C, H, W) of any dtype extended by ``margin`` pixels on every side as if they repeated periodically
    (the window a cropped level of a lifted wavelet trains on).

    >>> periodic_pad(torch.arange(3).reshape(1, 1, 1, 3), 1)[0, 0].tolist()
    [[2, 0, 1, 2, 0], [2, 0, 1, 2, 0], [2, 0, 1, 2, 0]]
    """
    if margin <= 0:
        return x
    h, w = x.shape[-2], x.shape[-1]
    rows = torch.arange(-margin, h + margin, device=x.device) % h
    cols = torch.arange(-margin, w + margin, device=x.device) % w
    return x[..., rows, :][..., cols]


def random_crop(x: Tensor, size: int | tuple[int, int], generator: torch.Generator | None = None,
                align: int = 1) -> Tensor:
    """A random crop of ``size`` from each image (NCHW), positions (multiples of ``align``) drawn independently
    per image."""
    ch, cw = (size, size) if isinstance(size, int) else size
    n, _, h, w = x.shape
    if ch > h or cw > w:
        raise UserInputError(f"crop {ch}×{cw} is larger than the image {h}×{w}")
    if (ch, cw) == (h, w):
        return x
    ys = torch.randint(0, (h - ch) // align + 1, (n,), generator=generator) * align
    xs = torch.randint(0, (w - cw) // align + 1, (n,), generator=generator) * align
    rows = (ys[:, None] + torch.arange(ch))[:, None, :, None].expand(n, x.shape[1], ch, w)
    cols = (xs[:, None] + torch.arange(cw))[:, None, None, :].expand(n, x.shape[1], ch, cw)
    return x.gather(2, rows.to(x.device)).gather(3, cols.to(x.device))
