"""Glow steps (ActNorm → 1×1 conv → coupling), stacks of K steps, and the multi-scale Glow
(Kingma & Dhariwal 2018)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from waveletflow.errors import UserInputError
from waveletflow.layers import ActNorm, AffineCoupling, InvConv1x1, InvertibleLayer, Sequential, SplitPrior, Squeeze

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def standard_normal_logp(z: Tensor) -> Tensor:
    """Per-sample ``log N(z; 0, I)`` summed over every non-batch axis."""
    return (-0.5 * z.pow(2) - _HALF_LOG_2PI).reshape(z.shape[0], -1).sum(dim=1)


class FlowStep(Sequential):
    """One Glow step: ActNorm → invertible 1×1 conv → (conditional) coupling.

    >>> import torch
    >>> step = FlowStep(4, width=8)
    >>> x = torch.randn(2, 4, 3, 3)
    >>> y, logdet = step(x)
    >>> torch.allclose(step.inverse(y)[0], x, atol=1e-5)
    True
    """

    def __init__(
        self,
        num_channels: int,
        cond_channels: int = 0,
        width: int = 64,
        n_blocks: int = 1,
        coupling: str = "affine",
        lu: bool = True,
        parity: int = 0,
        net: str = "residual",
    ):
        mask = "channel" if num_channels > 1 else "checkerboard"
        super().__init__(
            [
                ActNorm(num_channels),
                InvConv1x1(num_channels, lu=lu),
                AffineCoupling(num_channels, cond_channels, width, n_blocks, coupling, mask=mask, parity=parity,
                               net=net),
            ]
        )


def flow_stack(
    num_channels: int,
    n_steps: int,
    cond_channels: int = 0,
    width: int = 64,
    n_blocks: int = 1,
    coupling: str = "affine",
    lu: bool = True,
    final_actnorm: bool = True,
    net: str = "residual",
    checkpoint: bool = False,
) -> Sequential:
    """K flow steps followed by a final ActNorm (the conditional Glow of one Wavelet Flow level, Yu et al. 2020).

    Single-channel inputs use checkerboard couplings of alternating parity; ``checkpoint`` recomputes each step
    in the backward pass instead of keeping its activations (see :class:`Sequential`).
    """
    if n_steps < 1:
        raise UserInputError(f"a flow needs at least one step, got {n_steps}")
    layers: list[InvertibleLayer] = [
        FlowStep(num_channels, cond_channels, width, n_blocks, coupling, lu, parity=k, net=net) for k in range(n_steps)
    ]
    if final_actnorm:
        layers.append(ActNorm(num_channels))
    return Sequential(layers, checkpoint=checkpoint)


class MultiScaleGlow(InvertibleLayer):
    """Glow's multi-scale architecture (Kingma & Dhariwal 2018) as one bijection from images to a flat latent.

    ``n_scales`` times: squeeze (when ``squeeze``) → K steps → split with a learned prior (all but the last
    scale). ``forward(x) -> (z, logdet)`` with ``z`` (N, C·H·W) standard normal under the model, so
    ``log p(x) = standard_normal_logp(z) + logdet``. Without squeezing (``squeeze=False``), a single scale
    of K steps models images of any size, e.g. a 7×7 Wavelet Flow base (Yu et al. 2020). ``net`` picks the
    coupling network (``residual`` or ``glow``, see :class:`~waveletflow.layers.AffineCoupling`); ``checkpoint``
    recomputes each step in the backward pass instead of keeping its activations (gradient checkpointing, as
    Glow's released code trains).

    >>> import torch
    >>> glow = MultiScaleGlow((1, 8, 8), n_scales=2, n_steps=2, width=8)
    >>> x = torch.rand(3, 1, 8, 8)
    >>> z, logdet = glow(x)
    >>> tuple(z.shape), torch.allclose(glow.inverse(z)[0], x, atol=1e-5)
    ((3, 64), True)
    >>> log_p = standard_normal_logp(z) + logdet   # nats per image, exact
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        n_scales: int = 3,
        n_steps: int = 8,
        width: int = 64,
        n_blocks: int = 1,
        coupling: str = "affine",
        lu: bool = True,
        squeeze: bool = True,
        net: str = "residual",
        checkpoint: bool = False,
    ):
        super().__init__()
        c, h, w = (int(v) for v in image_shape)
        self.image_shape = (c, h, w)
        self.in_shape = self.image_shape
        self.num_dims = c * h * w
        self.out_shape = (self.num_dims,)
        if n_scales < 1:
            raise UserInputError(f"a Glow needs at least one scale, got {n_scales}")
        if not squeeze and n_scales != 1:
            raise UserInputError("a Glow without squeezes has exactly one scale")
        self.stages = nn.ModuleList()
        self.splits = nn.ModuleList()
        self.latent_shapes: list[tuple[int, int, int]] = []  # shapes of the factored-out parts, in order
        for scale in range(n_scales):
            layers: list[InvertibleLayer] = []
            if squeeze:
                if h % 2 or w % 2:
                    raise UserInputError(
                        f"Glow with {n_scales} scales cannot squeeze a {image_shape[1]}×{image_shape[2]} image "
                        f"(scale {scale} has odd size {h}×{w}); use fewer scales"
                    )
                layers.append(Squeeze(c))
                c, h, w = 4 * c, h // 2, w // 2
            layers.append(flow_stack(c, n_steps, 0, width, n_blocks, coupling, lu, final_actnorm=False, net=net,
                                     checkpoint=checkpoint))
            self.stages.append(Sequential(layers))
            if scale < n_scales - 1:
                split = SplitPrior(c)
                self.splits.append(split)
                self.latent_shapes.append((c - split.keep, h, w))
                c = split.keep
        self.top = ActNorm(c)
        self.latent_shapes.append((c, h, w))

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x)
        logdet = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        parts = []
        for i, stage in enumerate(self.stages):
            x, ld = stage(x)
            logdet = logdet + ld
            if i < len(self.splits):
                y, ld = self.splits[i](x)
                logdet = logdet + ld
                keep = self.splits[i].keep
                parts.append(y[:, keep:].reshape(x.shape[0], -1))
                x = y[:, :keep]
        x, ld = self.top(x)
        parts.append(x.reshape(x.shape[0], -1))
        return torch.cat(parts, dim=1), logdet + ld

    def inverse(self, z: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(z, shape=self.out_shape)
        n = z.shape[0]
        chunks = list(torch.split(z, [math.prod(s) for s in self.latent_shapes], dim=1))
        x, logdet = self.top.inverse(chunks[-1].reshape(n, *self.latent_shapes[-1]))
        for i in reversed(range(len(self.stages))):
            if i < len(self.splits):
                eps = chunks[i].reshape(n, *self.latent_shapes[i])
                x, ld = self.splits[i].inverse(torch.cat((x, eps), dim=1))
                logdet = logdet + ld
            x, ld = self.stages[i].inverse(x)
            logdet = logdet + ld
        return x, logdet


@torch.no_grad()
def data_dependent_init(flow: nn.Module, x: Tensor, cond: Tensor | None = None,
                        run: Callable[[], object] | None = None) -> None:
    """(Re-)initialise every ActNorm of ``flow`` from the batch ``x``, layer by layer, in one forward pass
    (Kingma & Dhariwal 2018, §3.1); ``run`` is that pass when it is not ``flow(x, cond)`` (e.g. a model computing
    the terms of the levels that ``flow`` holds)."""
    was_training = flow.training
    for m in flow.modules():
        if isinstance(m, ActNorm):
            m.initialized.fill_(False)
    flow.train()
    run() if run is not None else flow(x, cond)
    flow.train(was_training)
