"""Affine and additive coupling (Dinh et al. 2017; Kingma & Dhariwal 2018), optionally conditioned on an image
(Yu et al. 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from waveletflow.errors import UserInputError
from waveletflow.layers.actnorm import ActNorm
from waveletflow.layers.base import InvertibleLayer, conv_shape
from waveletflow.layers.precision import NetworkPrecision, run_network

#: coupling types: Wavelet Flow's bounded scale, Glow's sigmoid scale, and additive (volume preserving)
COUPLINGS = ("affine", "glow", "additive")
#: coupling networks: Wavelet Flow's residual network, and Glow's network as published
COUPLING_NETS = ("residual", "glow")


class ZeroConv2d(nn.Module):
    """3×3 convolution initialised to zero, with a learned per-channel output scale ``exp(3·logs)``."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.logs = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x) * torch.exp(3.0 * self.logs)


class CouplingNet(nn.Module):
    """1×1 conv to ``width``, ``n_blocks`` residual blocks (3×3 conv → ReLU → 1×1 conv → ReLU(x + ·)),
    and a zero-initialised 3×3 output conv, so a new coupling is the identity."""

    def __init__(self, in_channels: int, out_channels: int, width: int = 64, n_blocks: int = 1):
        super().__init__()
        self.inp = nn.Conv2d(in_channels, width, 1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 1))
            for _ in range(n_blocks)
        )
        self.out = ZeroConv2d(width, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.inp(x))
        for block in self.blocks:
            h = F.relu(h + block(h))
        return self.out(h)


class GlowCouplingNet(nn.Module):
    """Glow's coupling network as published (Kingma & Dhariwal 2018, §3.3 and the released code): 3×3 conv →
    ActNorm → ReLU → 1×1 conv → ActNorm → ReLU → zero-initialised 3×3 conv (convolutions without bias, the
    ActNorms initialised from data); ``n_blocks`` is not used."""

    def __init__(self, in_channels: int, out_channels: int, width: int = 512, n_blocks: int = 0):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.norm1 = ActNorm(width)
        self.conv2 = nn.Conv2d(width, width, 1, bias=False)
        self.norm2 = ActNorm(width)
        self.out = ZeroConv2d(width, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.norm1(self.conv1(x))[0])
        h = F.relu(self.norm2(self.conv2(h))[0])
        return self.out(h)


class AffineCoupling(NetworkPrecision, InvertibleLayer):
    """Coupling layer: one part of ``x`` (plus the conditioning image) predicts a shift and scale for the rest.

    The network may run in lower precision (:func:`~waveletflow.layers.precision.network_precision`); the shift,
    the scale and the log-det are then computed from its output in ``x``'s dtype.

    Args:
        num_channels: channels of ``x``.
        cond_channels: channels of the conditioning image concatenated to the network input (0: none).
        coupling: ``affine`` — ``y2 = (x2 + t)·exp(tanh(s))`` (Wavelet Flow), ``glow`` —
            ``y2 = (x2 + t)·sigmoid(s + 2)`` (Glow), ``additive`` — ``y2 = x2 + t``.
        mask: ``channel`` splits channels at ``C // 2``; ``checkerboard`` conditions on alternate pixels
            (needed when C = 1); ``parity`` picks which half is transformed.
        net: the network predicting shift and scale: ``residual`` (:class:`CouplingNet`, Wavelet Flow) or
            ``glow`` (:class:`GlowCouplingNet`, Glow as published).

    Example (conditioned on a 2-channel image, as a Wavelet Flow detail level is on its low-pass):

    >>> import torch
    >>> layer = AffineCoupling(6, cond_channels=2, width=8)
    >>> x, low = torch.randn(2, 6, 4, 4), torch.randn(2, 2, 4, 4)
    >>> y, logdet = layer(x, low)
    >>> torch.allclose(layer.inverse(y, low)[0], x, atol=1e-6), tuple(logdet.shape)
    (True, (2,))
    """

    def __init__(
        self,
        num_channels: int,
        cond_channels: int = 0,
        width: int = 64,
        n_blocks: int = 1,
        coupling: str = "affine",
        mask: str = "channel",
        parity: int = 0,
        net: str = "residual",
    ):
        super().__init__()
        if net not in COUPLING_NETS:
            raise UserInputError(f"unknown coupling network {net!r}; choose one of {', '.join(COUPLING_NETS)}")
        if coupling not in COUPLINGS:
            raise UserInputError(f"unknown coupling {coupling!r}; choose one of {', '.join(COUPLINGS)}")
        if mask not in ("channel", "checkerboard"):
            raise UserInputError(f"unknown coupling mask {mask!r}; choose channel or checkerboard")
        if mask == "channel" and num_channels < 2:
            raise UserInputError("a channel-split coupling needs at least 2 channels; use mask='checkerboard'")
        self.in_shape = self.out_shape = conv_shape(num_channels)
        self.cond_channels = cond_channels
        self.coupling = coupling
        self.mask = mask
        self.parity = parity % 2
        if mask == "channel":
            na = num_channels // 2
            self.n_cond_part = num_channels - na if self.parity else na
            self.n_out_part = num_channels - self.n_cond_part
            net_in = self.n_cond_part + cond_channels
        else:
            self.n_out_part = num_channels
            net_in = num_channels + 1 + cond_channels  # masked x and the mask itself
        factor = 1 if coupling == "additive" else 2
        self.net = (CouplingNet if net == "residual" else GlowCouplingNet)(net_in, factor * self.n_out_part, width, n_blocks)

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.parity:
            return x[:, self.n_out_part :], x[:, : self.n_out_part]
        return x[:, : self.n_cond_part], x[:, self.n_cond_part :]

    def _join(self, xa: Tensor, xb: Tensor) -> Tensor:
        return torch.cat((xb, xa) if self.parity else (xa, xb), dim=1)

    def _checker(self, x: Tensor) -> Tensor:
        h, w = x.shape[2], x.shape[3]
        ii = torch.arange(h, device=x.device).view(h, 1)
        jj = torch.arange(w, device=x.device).view(1, w)
        return ((ii + jj + self.parity) % 2 == 0).to(x.dtype).view(1, 1, h, w)

    def _params(self, xa: Tensor, cond: Tensor | None, extra: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        parts = [xa] if extra is None else [xa, extra.expand(xa.shape[0], -1, -1, -1)]
        if self.cond_channels:
            parts.append(cond)
        h = run_network(self, self.net, torch.cat(parts, dim=1) if len(parts) > 1 else xa)
        if self.coupling == "additive":
            return h, None
        shift, raw = h[:, 0::2], h[:, 1::2]
        if self.coupling == "affine":
            return shift, torch.tanh(raw)
        return shift, F.logsigmoid(raw + 2.0)

    def _logdet(self, log_scale: Tensor | None, x: Tensor, keep: Tensor | float = 1.0) -> Tensor:
        if log_scale is None:
            return x.new_zeros(x.shape[0])
        return (log_scale * keep).sum(dim=(1, 2, 3))

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x, cond)
        if self.mask == "checkerboard":
            m = self._checker(x)
            shift, log_scale = self._params(x * m, cond, m)
            y = x + shift
            if log_scale is not None:
                y = y * torch.exp(log_scale)
            return x * m + y * (1 - m), self._logdet(log_scale, x, 1 - m)
        xa, xb = self._split(x)
        shift, log_scale = self._params(xa, cond)
        yb = xb + shift
        if log_scale is not None:
            yb = yb * torch.exp(log_scale)
        return self._join(xa, yb), self._logdet(log_scale, x)

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(y, cond)
        if self.mask == "checkerboard":
            m = self._checker(y)
            shift, log_scale = self._params(y * m, cond, m)
            x = y * torch.exp(-log_scale) if log_scale is not None else y
            return y * m + (x - shift) * (1 - m), -self._logdet(log_scale, y, 1 - m)
        ya, yb = self._split(y)
        shift, log_scale = self._params(ya, cond)
        xb = yb * torch.exp(-log_scale) if log_scale is not None else yb
        return self._join(ya, xb - shift), -self._logdet(log_scale, y)
