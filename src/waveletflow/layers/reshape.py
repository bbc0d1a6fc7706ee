"""Squeeze: space to depth (Dinh et al. 2017; Kingma & Dhariwal 2018)."""

from __future__ import annotations

import torch
from torch import Tensor

from waveletflow.errors import UserInputError
from waveletflow.layers.base import InvertibleLayer, conv_shape


class Squeeze(InvertibleLayer):
    """(N, C, H, W) → (N, 4C, H/2, W/2), each 2×2 block moved into channels; log-det 0.

    >>> import torch
    >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
    >>> y, logdet = Squeeze(1)(x)
    >>> tuple(y.shape), float(logdet), torch.equal(Squeeze(1).inverse(y)[0], x)
    ((1, 4, 2, 2), 0.0, True)
    """

    def __init__(self, num_channels: int):
        super().__init__()
        self.in_shape = conv_shape(num_channels)
        self.out_shape = conv_shape(4 * num_channels)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x)
        n, c, h, w = x.shape
        if h % 2 or w % 2:
            raise UserInputError(f"squeeze needs even height and width, got {h}×{w}")
        y = x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(n, 4 * c, h // 2, w // 2)
        return y, torch.zeros(n, dtype=x.dtype, device=x.device)

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(y, shape=self.out_shape)
        n, c4, h, w = y.shape
        c = c4 // 4
        x = y.reshape(n, c, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, c, 2 * h, 2 * w)
        return x, torch.zeros(n, dtype=y.dtype, device=y.device)
