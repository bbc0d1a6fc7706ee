"""Glow's split with a learned conditional prior, as an invertible standardisation."""

from __future__ import annotations

import torch
from torch import Tensor

from waveletflow.errors import UserInputError
from waveletflow.layers.base import InvertibleLayer, conv_shape
from waveletflow.layers.coupling import ZeroConv2d


class SplitPrior(InvertibleLayer):
    """Split ``x = (z1, z2)`` and model ``p(z2 | z1) = N(μ(z1), σ(z1)²)`` (Kingma & Dhariwal 2018).

    Written as a bijection: ``forward`` returns ``(z1, ε2)`` with ``ε2 = (z2 − μ)/σ`` standard normal
    under the model and log-det ``−Σ log σ``, so ``log p(z2 | z1) = log N(ε2) + logdet``.
    The caller factors ``ε2`` out (``y[:, keep:]``) and continues with ``z1 = y[:, :keep]``.

    >>> import torch
    >>> layer = SplitPrior(4)
    >>> x = torch.randn(2, 4, 3, 3)
    >>> z, logdet = layer(x)          # every dimension kept: z1 as it is, z2 standardised under its prior
    >>> torch.allclose(layer.inverse(z)[0], x, atol=1e-6)
    True
    """

    def __init__(self, num_channels: int):
        super().__init__()
        if num_channels < 2:
            raise UserInputError("SplitPrior needs at least 2 channels")
        self.in_shape = self.out_shape = conv_shape(num_channels)
        self.keep = num_channels // 2
        self.prior = ZeroConv2d(self.keep, 2 * (num_channels - self.keep))

    def _stats(self, z1: Tensor) -> tuple[Tensor, Tensor]:
        h = self.prior(z1)
        return h[:, 0::2], h[:, 1::2]

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x)
        z1, z2 = x[:, : self.keep], x[:, self.keep :]
        mean, log_std = self._stats(z1)
        eps = (z2 - mean) * torch.exp(-log_std)
        return torch.cat((z1, eps), dim=1), -log_std.sum(dim=(1, 2, 3))

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(y)
        z1, eps = y[:, : self.keep], y[:, self.keep :]
        mean, log_std = self._stats(z1)
        return torch.cat((z1, mean + eps * torch.exp(log_std)), dim=1), log_std.sum(dim=(1, 2, 3))
