"""A conditioning network: a flow conditioned on learned features of its conditioning image, seen through dilated
convolutions and, optionally, self-attention over the whole image (global context)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from waveletflow.errors import UserInputError
from waveletflow.layers.base import FlowOutput, InvertibleLayer
from waveletflow.layers.precision import NetworkPrecision, run_network
from waveletflow.layers.solver import SolverConfig


def sinusoid_positions(channels: int, h: int, w: int, device=None, dtype=torch.float32) -> Tensor:
    """(h·w, channels) 2-D sinusoidal position codes (half the channels for the row, half for the column, as in
    Vaswani et al. 2017 per axis), positions scaled to [0, 1) so that a code means a place in the image at any size.

    >>> sinusoid_positions(8, 2, 3).shape
    torch.Size([6, 8])
    """
    quarter = max(1, channels // 4)
    freqs = torch.exp(torch.arange(quarter, device=device, dtype=torch.float64) * (-math.log(100.0) / quarter))
    rows = (torch.arange(h, device=device, dtype=torch.float64) / h)[:, None] * freqs * 2 * math.pi * 8
    cols = (torch.arange(w, device=device, dtype=torch.float64) / w)[:, None] * freqs * 2 * math.pi * 8
    r = torch.cat((rows.sin(), rows.cos()), dim=1)[:, None, :].expand(h, w, -1)
    c = torch.cat((cols.sin(), cols.cos()), dim=1)[None, :, :].expand(h, w, -1)
    codes = torch.cat((r, c), dim=2).reshape(h * w, -1)[:, :channels]
    if codes.shape[1] < channels:
        codes = torch.cat((codes, codes.new_zeros(h * w, channels - codes.shape[1])), dim=1)
    return codes.to(dtype)


class GlobalContext(nn.Module):
    """Self-attention over the whole image: the features are average-pooled to at most ``grid``×``grid`` tokens,
    given 2-D position codes, passed through ``layers`` pre-norm transformer layers, and the result, upsampled
    bilinearly, is added to the features (so every position sees the whole image at a cost that does not grow
    with its size).

    >>> ctx = GlobalContext(8, layers=1)
    >>> ctx(torch.rand(2, 8, 32, 20)).shape
    torch.Size([2, 8, 32, 20])
    """

    def __init__(self, width: int, layers: int = 1, grid: int = 16):
        super().__init__()
        heads = next(h for h in (4, 2, 1) if width % h == 0)
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=2 * width, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.grid = grid
        self.out = nn.Conv2d(width, width, 1)
        nn.init.zeros_(self.out.weight)  # starts as no change to the features
        nn.init.zeros_(self.out.bias)

    def forward(self, f: Tensor) -> Tensor:
        n, c, h, w = f.shape
        gh, gw = min(h, self.grid), min(w, self.grid)
        pooled = nn.functional.adaptive_avg_pool2d(f, (gh, gw))
        tokens = pooled.flatten(2).transpose(1, 2) + sinusoid_positions(c, gh, gw, f.device, f.dtype)
        g = self.blocks(tokens).transpose(1, 2).reshape(n, c, gh, gw)
        if (gh, gw) != (h, w):
            g = nn.functional.interpolate(g, size=(h, w), mode="bilinear", align_corners=False)
        return f + self.out(g)


class EncodedCondition(NetworkPrecision, InvertibleLayer):
    """``flow`` conditioned on ``[c, encoder(c)]`` instead of ``c``: the conditioning image and ``width`` features
    of it, computed once per call by ``depth`` 3×3 convolutions with ReLUs whose dilations double (1, 2, 4, …),
    so every coupling of the flow sees a context of ``2^(depth+1) − 1`` pixels around each position instead of
    the few its own network reaches; with ``attention`` > 0, that many self-attention layers over the whole
    image follow (:class:`GlobalContext`: global context). The map of ``x`` is ``flow``'s, so are its inverse
    and log-det.

    Args:
        flow: a conditional flow taking ``cond_channels + width`` conditioning channels.
        cond_channels: channels of the conditioning image.
        width: features computed from it.
        depth: convolutions of the encoder.
        attention: transformer layers of global context after the convolutions (0: none).
    """

    def __init__(self, flow: InvertibleLayer, cond_channels: int, width: int = 32, depth: int = 3,
                 attention: int = 0):
        super().__init__()
        if cond_channels < 1 or width < 1 or depth < 1 or attention < 0:
            raise UserInputError("EncodedCondition needs a conditioning image, a positive width and depth, and "
                                 "attention layers of at least 0")
        if flow.cond_channels != cond_channels + width:
            raise UserInputError(f"EncodedCondition: the flow takes {flow.cond_channels} conditioning channels, "
                                 f"expected {cond_channels} + {width}")
        self.flow = flow
        self.in_shape, self.out_shape = flow.in_shape, flow.out_shape
        self.cond_channels = cond_channels
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Conv2d(cond_channels if i == 0 else width, width, 3, padding=2**i, dilation=2**i), nn.ReLU()]
        if attention:
            layers.append(GlobalContext(width, attention))
        self.encoder = nn.Sequential(*layers)

    def encode(self, cond: Tensor) -> Tensor:
        """The conditioning image with its features appended along the channels."""
        return torch.cat((cond, run_network(self, self.encoder, cond)), dim=1)

    def transform(self, x: Tensor, cond: Tensor | None = None, solver: SolverConfig | None = None) -> FlowOutput:
        self._check(x, cond)
        return self.flow.transform(x, self.encode(cond), solver)

    def inverse_transform(self, y: Tensor, cond: Tensor | None = None, solver: SolverConfig | None = None,
                          jac: bool = True) -> FlowOutput:
        self._check(y, cond)
        return self.flow.inverse_transform(y, self.encode(cond), solver, jac)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.transform(x, cond)[:2]  # type: ignore[return-value]

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.inverse_transform(y, cond)[:2]  # type: ignore[return-value]
