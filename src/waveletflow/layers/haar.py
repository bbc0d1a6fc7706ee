"""One Haar step as an invertible layer: the image to its low-pass and detail bands (Yu et al. 2020, §3)."""

from __future__ import annotations

import torch
from torch import Tensor

from waveletflow.layers.base import InvertibleLayer, conv_shape
from waveletflow.wavelets import haar, haar_logdet_per_low, inverse_haar


class HaarStep(InvertibleLayer):
    """(N, C, H, W) → (N, 4C, H/2, W/2): the low-pass image in channels ``[0, C)``, the details after.

    ``convention`` is one of :data:`waveletflow.wavelets.CONVENTIONS`; the log-det is that of
    :func:`waveletflow.wavelets.haar` (0 for ``orthonormal`` and ``unimodular``).

    >>> import torch
    >>> step = HaarStep(1)
    >>> x = torch.rand(1, 1, 4, 4)
    >>> y, logdet = step(x)
    >>> tuple(y.shape), torch.allclose(y[:, :1], x.reshape(1, 1, 2, 2, 2, 2).mean((3, 5)))  # the low-pass: block means
    ((1, 4, 2, 2), True)
    >>> torch.allclose(step.inverse(y)[0], x, atol=1e-6)
    True
    """

    def __init__(self, num_channels: int, convention: str = "average"):
        super().__init__()
        self._logdet_per_low = haar_logdet_per_low(convention)  # validates the convention
        self.convention = convention
        self.in_shape = conv_shape(num_channels)
        self.out_shape = conv_shape(4 * num_channels)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x)
        low, detail, logdet = haar(x, self.convention)
        return torch.cat((low, detail), dim=1), logdet

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(y, shape=self.out_shape)
        c = self.num_channels
        x = inverse_haar(y[:, :c], y[:, c:], self.convention)
        logdet = -c * y.shape[2] * y.shape[3] * self._logdet_per_low
        return x, torch.full((y.shape[0],), logdet, dtype=y.dtype, device=y.device)
