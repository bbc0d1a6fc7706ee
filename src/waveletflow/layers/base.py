"""The invertible-layer contract, the output of a transform, and a sequential container."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor, nn

from waveletflow.errors import UserInputError

if TYPE_CHECKING:
    from waveletflow.layers.solver import SolverConfig

#: a per-sample shape such as (C, H, W); ``None`` marks a size the layer accepts at any value
Shape = tuple[int | None, ...]


class FlowOutput(NamedTuple):
    """What a transform returns: the image of the input and its statistics, per sample.

    ``kinetic`` and ``jacobian`` are the RNODE integrals (Finlay et al. 2020) divided by the dimension, ``None``
    for layers without an ODE; ``nfe`` counts ODE function evaluations.
    """

    z: Tensor
    logdet: Tensor | None
    kinetic: Tensor | None = None
    jacobian: Tensor | None = None
    nfe: int = 0


def conv_shape(channels: int) -> Shape:
    """The shape of a fully convolutional layer: ``channels`` fixed, any height and width."""
    return (channels, None, None)


def format_shape(shape: Shape) -> str:
    """``(N, 4, H, W)`` for ``(4, None, None)``; ``(N, 16)`` for ``(16,)``."""
    names = ("C", "H", "W") if len(shape) == 3 else ("?",) * len(shape)
    return "(" + ", ".join(["N", *(n if s is None else str(s) for s, n in zip(shape, names))]) + ")"


def shapes_fit(produced: Shape, expected: Shape) -> bool:
    """Whether an output of shape ``produced`` is a valid input of shape ``expected`` (``None`` fits anything)."""
    return len(produced) == len(expected) and all(
        a is None or b is None or a == b for a, b in zip(produced, expected)
    )


class InvertibleLayer(nn.Module):
    """An invertible map with a per-sample log|det J|.

    Subclasses set ``in_shape`` and ``out_shape`` (per sample, ``None`` = any size) in their constructor and
    implement ``forward(x, cond=None) -> (y, logdet)`` and ``inverse(y, cond=None) -> (x, logdet)``, the
    inverse's log-det being minus the forward one at the matching point. ``cond`` is an optional conditioning
    image with ``cond_channels`` channels and the spatial size of ``x``. Layers solving an ODE also override
    :meth:`transform` and :meth:`inverse_transform`, which take the solver and return statistics.
    """

    in_shape: Shape
    out_shape: Shape
    cond_channels: int = 0

    @property
    def num_channels(self) -> int:
        """Channels of the input (``in_shape[0]``)."""
        return int(self.in_shape[0])  # type: ignore[arg-type]

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def transform(self, x: Tensor, cond: Tensor | None = None, solver: SolverConfig | None = None) -> FlowOutput:
        """The forward map with its statistics; ``solver`` is used by ODE layers only."""
        return FlowOutput(*self(x, cond))

    def inverse_transform(self, y: Tensor, cond: Tensor | None = None, solver: SolverConfig | None = None,
                          jac: bool = True) -> FlowOutput:
        """The inverse map with its statistics; ``solver`` is used by ODE layers only. With ``jac=False`` a layer
        may skip its log-det (the output's ``logdet`` is then None), as sampling needs none (FrEIA's ``jac``)."""
        x, logdet = self.inverse(y, cond)
        return FlowOutput(x, logdet if jac else None)

    def _check(self, x: Tensor, cond: Tensor | None = None, shape: Shape | None = None) -> None:
        """Validate ``x`` against ``shape`` (default ``in_shape``) and the conditioning image against ``x``."""
        shape = self.in_shape if shape is None else shape
        if not shapes_fit(tuple(x.shape[1:]), shape):
            raise UserInputError(f"{type(self).__name__} expects {format_shape(shape)}, got shape {tuple(x.shape)}")
        if self.cond_channels:
            ok = (cond is not None and cond.dim() == 4 and cond.shape[0] == x.shape[0]
                  and cond.shape[1] == self.cond_channels and cond.shape[2:] == x.shape[2:])
            if not ok:
                got = None if cond is None else tuple(cond.shape)
                raise UserInputError(
                    f"{type(self).__name__} needs a conditioning image ({x.shape[0]}, {self.cond_channels}, "
                    f"{', '.join(str(s) for s in x.shape[2:])}), got {got}"
                )


def _add(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    return b if a is None else a if b is None else a + b


class Sequential(InvertibleLayer):
    """Layers applied in order; log-dets and statistics add up, the inverse runs backwards.

    With ``checkpoint``, the forward transform keeps no activations inside a layer while gradients are recorded
    (gradient checkpointing: each layer is recomputed in the backward pass), trading about a third more compute
    for the memory of one layer's activations.

    Raises :class:`UserInputError` when a layer's output shape does not fit the next layer's input, or when
    conditional layers disagree on the conditioning channels.

    >>> import torch
    >>> from waveletflow.layers import ActNorm, InvConv1x1, Squeeze
    >>> flow = Sequential([Squeeze(1), ActNorm(4), InvConv1x1(4)])
    >>> flow.in_shape, flow.out_shape
    ((1, None, None), (4, None, None))
    >>> x = torch.rand(2, 1, 4, 4)
    >>> y, logdet = flow(x)
    >>> torch.allclose(flow.inverse(y)[0], x, atol=1e-5)
    True
    """

    def __init__(self, layers: Iterable[InvertibleLayer], checkpoint: bool = False):
        super().__init__()
        self.checkpoint = checkpoint
        self.layers = nn.ModuleList(layers)
        if not len(self.layers):
            raise UserInputError("Sequential needs at least one layer")
        for i, (a, b) in enumerate(zip(self.layers[:-1], self.layers[1:])):
            if not shapes_fit(a.out_shape, b.in_shape):
                same_rank = len(a.out_shape) == len(b.in_shape)
                what = "channels" if same_rank and a.out_shape[0] != b.in_shape[0] else "shape"
                raise UserInputError(
                    f"Sequential: layer {i} ({type(a).__name__}) outputs shape {format_shape(a.out_shape)} but "
                    f"layer {i + 1} ({type(b).__name__}) expects {format_shape(b.in_shape)} (mismatched {what})"
                )
        conds = {layer.cond_channels for layer in self.layers if layer.cond_channels}
        if len(conds) > 1:
            raise UserInputError(f"Sequential: layers need different conditioning channels {sorted(conds)}")
        self.in_shape = self.layers[0].in_shape
        self.out_shape = self.layers[-1].out_shape
        self.cond_channels = conds.pop() if conds else 0

    @staticmethod
    def _chain(layers: Iterable[InvertibleLayer], step: Callable[[InvertibleLayer, Tensor], FlowOutput],
               x: Tensor, jac: bool = True) -> FlowOutput:
        logdet = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device) if jac else None
        kinetic = jacobian = None
        nfe = 0
        for layer in layers:
            out = step(layer, x)
            x, logdet = out.z, logdet + out.logdet if jac else None
            kinetic, jacobian, nfe = _add(kinetic, out.kinetic), _add(jacobian, out.jacobian), nfe + out.nfe
        return FlowOutput(x, logdet, kinetic, jacobian, nfe)

    def transform(self, x: Tensor, cond: Tensor | None = None, solver: SolverConfig | None = None) -> FlowOutput:
        if self.checkpoint and torch.is_grad_enabled():
            from torch.utils.checkpoint import checkpoint

            def step(layer: InvertibleLayer, v: Tensor) -> FlowOutput:
                return checkpoint(layer.transform, v, cond, solver, use_reentrant=False)

            return self._chain(self.layers, step, x)
        return self._chain(self.layers, lambda layer, v: layer.transform(v, cond, solver), x)

    def inverse_transform(self, y: Tensor, cond: Tensor | None = None, solver: SolverConfig | None = None,
                          jac: bool = True) -> FlowOutput:
        return self._chain(reversed(self.layers), lambda layer, v: layer.inverse_transform(v, cond, solver, jac), y, jac)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.transform(x, cond)[:2]  # type: ignore[return-value]

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.inverse_transform(y, cond)[:2]  # type: ignore[return-value]
