"""Invertible 1×1 convolution (Kingma & Dhariwal 2018), plain or LU-parametrised."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from waveletflow.layers.base import InvertibleLayer, conv_shape


def _random_rotation(n: int) -> Tensor:
    """A random n×n rotation, drawn on the CPU (also when the default device is another one, e.g. ``meta``)."""
    q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, device="cpu"))
    return q


class InvConv1x1(InvertibleLayer):
    """A learned channel mixing ``y = W x`` at every pixel, initialised as a random rotation.

    With ``lu=True`` (default) ``W = P·L·(U + diag(sign·exp(log_s)))``, log-det ``H·W·Σ log_s``;
    with ``lu=False`` a plain matrix with its log-det from ``slogdet``. Log-dets and inverses of
    the plain matrix are computed in float64.

    >>> import torch
    >>> layer = InvConv1x1(4)
    >>> x = torch.randn(2, 4, 3, 3)
    >>> y, logdet = layer(x)
    >>> x2, back = layer.inverse(y)
    >>> torch.allclose(x2, x, atol=1e-5), torch.allclose(logdet + back, torch.zeros(2), atol=1e-5)
    (True, True)
    """

    def __init__(self, num_channels: int, lu: bool = True):
        super().__init__()
        self.in_shape = self.out_shape = conv_shape(num_channels)
        self.lu = lu
        w = _random_rotation(num_channels)
        dev = torch.empty(0).device  # the default device: the decompositions run on the CPU, then move there
        if lu:
            p, lower, upper = torch.linalg.lu(w)
            s = torch.diagonal(upper)
            self.register_buffer("perm", p.float().to(dev))
            self.register_buffer("sign_s", torch.sign(s).float().to(dev))
            self.register_buffer("lower_mask", torch.tril(torch.ones(num_channels, num_channels, device="cpu"), -1).to(dev))
            self.register_buffer("eye", torch.eye(num_channels, device="cpu").to(dev))
            self.lower = nn.Parameter(lower.float().to(dev))
            self.upper = nn.Parameter(torch.triu(upper, 1).float().to(dev))
            self.log_s = nn.Parameter(torch.log(torch.abs(s)).float().to(dev))
        else:
            self.weight = nn.Parameter(w.float().to(dev))

    def _weight(self) -> Tensor:
        if not self.lu:
            return self.weight
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.perm @ lower @ upper

    def _logdet_per_pixel(self) -> Tensor:
        if self.lu:
            return self.log_s.sum()
        return torch.linalg.slogdet(self.weight.double())[1].to(self.weight.dtype)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x)
        w = self._weight().to(x.dtype)
        y = F.conv2d(x, w.view(self.num_channels, self.num_channels, 1, 1))
        return y, self._logdet(x)

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(y)
        w_inv = torch.linalg.inv(self._weight().double()).to(y.dtype)
        return F.conv2d(y, w_inv.view(self.num_channels, self.num_channels, 1, 1)), -self._logdet(y)

    def _logdet(self, x: Tensor) -> Tensor:
        logdet = (x.shape[2] * x.shape[3]) * self._logdet_per_pixel().to(x.dtype)
        return logdet.expand(x.shape[0])
