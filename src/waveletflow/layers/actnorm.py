"""Activation normalisation (Glow) with data-dependent initialisation."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from waveletflow.errors import UserInputError
from waveletflow.layers.base import InvertibleLayer, conv_shape


class ActNorm(InvertibleLayer):
    """``y = (x + bias) · exp(log_scale)`` per channel (Kingma & Dhariwal 2018).

    Initialised from data the first time it runs forward in training mode (or explicitly with
    :meth:`initialize`) so that the output has zero mean and unit variance per channel. A compiled training
    step (``torch.compile``) takes it as initialised: the trainer initialises every level before its first step.

    >>> import torch
    >>> layer = ActNorm(3)
    >>> x = torch.randn(8, 3, 4, 4)
    >>> layer.initialize(x)                      # zero mean, unit variance per channel on this batch
    >>> y, logdet = layer(x)
    >>> torch.allclose(y.mean((0, 2, 3)), torch.zeros(3), atol=1e-5), torch.allclose(layer.inverse(y)[0], x, atol=1e-5)
    (True, True)
    """

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__()
        if num_channels < 1:
            raise UserInputError("ActNorm needs at least one channel")
        self.in_shape = self.out_shape = conv_shape(num_channels)
        self.eps = eps
        self.bias = nn.Parameter(torch.zeros(1, num_channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, num_channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Set bias and scale so that this batch comes out with per-channel mean 0 and std 1."""
        self._check(x)
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = x.std(dim=(0, 2, 3), keepdim=True, unbiased=False) if x[:, :1].numel() > 1 else torch.ones_like(mean)
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std + self.eps))
        self.initialized.fill_(True)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x)
        if self.training and not torch.compiler.is_compiling() and not bool(self.initialized):
            self.initialize(x)
        y = (x + self.bias) * torch.exp(self.log_scale)
        return y, self._logdet(x)

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(y)
        return y * torch.exp(-self.log_scale) - self.bias, -self._logdet(y)

    def _logdet(self, x: Tensor) -> Tensor:
        logdet = (x.shape[2] * x.shape[3]) * self.log_scale.sum()
        return logdet.expand(x.shape[0]).to(x.dtype)
