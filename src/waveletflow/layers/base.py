"""The invertible-layer contract and a sequential container."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from waveletflow.errors import UserInputError


class InvertibleLayer(nn.Module):
    """An invertible map with a per-sample log|det J|.

    Subclasses implement ``forward(x, cond=None) -> (y, logdet)`` with ``logdet`` of shape (N,)
    and ``inverse(y, cond=None) -> x``. ``cond`` is an optional conditioning image.
    """

    num_channels: int
    cond_channels: int = 0

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def _check(self, x: Tensor, cond: Tensor | None = None) -> None:
        if x.dim() != 4 or x.shape[1] != self.num_channels:
            raise UserInputError(
                f"{type(self).__name__} expects (N, {self.num_channels}, H, W), got shape {tuple(x.shape)}"
            )
        if self.cond_channels:
            if cond is None or cond.dim() != 4 or cond.shape[1] != self.cond_channels or cond.shape[2:] != x.shape[2:]:
                got = None if cond is None else tuple(cond.shape)
                raise UserInputError(
                    f"{type(self).__name__} needs a conditioning image (N, {self.cond_channels}, "
                    f"{x.shape[2]}, {x.shape[3]}), got {got}"
                )


class Sequential(InvertibleLayer):
    """Layers applied in order; log-dets add up, the inverse runs backwards."""

    def __init__(self, layers: Iterable[InvertibleLayer]):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        if not len(self.layers):
            raise ValueError("Sequential needs at least one layer")
        self.num_channels = self.layers[0].num_channels
        self.cond_channels = max(getattr(layer, "cond_channels", 0) for layer in self.layers)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        logdet = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for layer in self.layers:
            x, ld = layer(x, cond)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> Tensor:
        for layer in reversed(self.layers):
            y = layer.inverse(y, cond)
        return y
