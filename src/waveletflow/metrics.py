"""The numbers users compare: bits per dimension, in total and per level."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

LN2 = math.log(2.0)


def bits_per_dim(log_prob: Tensor | float, num_dims: int | float | Tensor, n_bits: int) -> Tensor:
    """Bits/dim of the discrete image from a log-density (nats) over ``[0, 1)^D``.

    ``(−log p(x) + D·n_bits·ln 2) / (D·ln 2)``, the density of the dequantised image in ``[0,1)^D``
    turned into the probability mass of its ``2^n_bits``-level bin.

    >>> float(bits_per_dim(torch.tensor(0.0), num_dims=10, n_bits=8))  # uniform density on [0,1)^D
    8.0
    """
    log_prob = torch.as_tensor(log_prob)
    return (-log_prob + num_dims * n_bits * LN2) / (num_dims * LN2)


def level_bits_per_dim(level_log_probs: Tensor, level_dims: Sequence[int], n_bits: int) -> Tensor:
    """Per-level contributions to the full image's bits/dim; they sum exactly to the total.

    Args:
        level_log_probs: (..., L) nats per level; their sum over the last axis is ``log p(x)``.
        level_dims: dimensions modelled by each level (they sum to the image's D).
    Returns:
        (..., L): level l contributes ``(−log p_l + D_l·n_bits·ln 2) / (D·ln 2)``.
    """
    dims = torch.as_tensor(list(level_dims), dtype=level_log_probs.dtype, device=level_log_probs.device)
    # each level's own bits/dim, weighted by its share of the image's dimensions
    return bits_per_dim(level_log_probs, dims, n_bits) * (dims / dims.sum())


def psnr(a: Tensor, b: Tensor, max_value: float = 255.0) -> Tensor:
    """Peak signal-to-noise ratio (dB) of each image of ``a`` against ``b`` (N, C, H, W, pixel values):
    ``10·log10(max² / MSE)``, infinite for identical images.

    >>> float(psnr(torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 255.0)))
    0.0
    """
    mse = (a.double() - b.double()).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(max_value**2 / mse)


def ssim(a: Tensor, b: Tensor, max_value: float = 255.0) -> Tensor:
    """Structural similarity of each image of ``a`` against ``b`` (N, C, H, W, pixel values): Wang et al.
    (2004) with an 11×11 Gaussian window of σ 1.5, K1 0.01, K2 0.03, averaged over pixels and channels, as
    torchmetrics computes it (``pip install torchmetrics``), one image and channel at a time (its convolution
    takes about a thousand bytes per pixel)."""
    try:
        from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim
    except ImportError:
        from waveletflow.errors import UserInputError

        raise UserInputError("SSIM needs torchmetrics: pip install torchmetrics") from None
    a, b = a.double(), b.double()
    return torch.stack([
        torch.stack([tm_ssim(a[i : i + 1, c : c + 1], b[i : i + 1, c : c + 1], data_range=max_value)
                     for c in range(a.shape[1])]).mean()
        for i in range(a.shape[0])])
