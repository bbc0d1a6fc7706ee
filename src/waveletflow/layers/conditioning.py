"""A conditioning network: a flow conditioned on learned features of its conditioning image."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from waveletflow.errors import UserInputError
from waveletflow.layers.base import FlowOutput, InvertibleLayer
from waveletflow.layers.precision import NetworkPrecision, run_network
from waveletflow.layers.solver import SolverConfig


class EncodedCondition(NetworkPrecision, InvertibleLayer):
    """``flow`` conditioned on ``[c, encoder(c)]`` instead of ``c``: the conditioning image and ``width`` features
    of it, computed once per call by ``depth`` 3×3 convolutions with ReLUs whose dilations double (1, 2, 4, …),
    so every coupling of the flow sees a context of ``2^(depth+1) − 1`` pixels around each position instead of
    the few its own network reaches. The map of ``x`` is ``flow``'s, so are its inverse and log-det.

    Args:
        flow: a conditional flow taking ``cond_channels + width`` conditioning channels.
        cond_channels: channels of the conditioning image.
        width: features computed from it.
        depth: convolutions of the encoder.
    """

    def __init__(self, flow: InvertibleLayer, cond_channels: int, width: int = 32, depth: int = 3):
        super().__init__()
        if cond_channels < 1 or width < 1 or depth < 1:
            raise UserInputError("EncodedCondition needs a conditioning image, and a positive width and depth")
        if flow.cond_channels != cond_channels + width:
            raise UserInputError(f"EncodedCondition: the flow takes {flow.cond_channels} conditioning channels, "
                                 f"expected {cond_channels} + {width}")
        self.flow = flow
        self.in_shape, self.out_shape = flow.in_shape, flow.out_shape
        self.cond_channels = cond_channels
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Conv2d(cond_channels if i == 0 else width, width, 3, padding=2**i, dilation=2**i), nn.ReLU()]
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
