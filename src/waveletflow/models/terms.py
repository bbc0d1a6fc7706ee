"""What a model's levels give back: a level's term for a batch, the trainer's objective, and bits/dim per level."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from torch import Tensor

from waveletflow.flows import standard_normal_logp
from waveletflow.layers import FlowOutput


class LevelTerm(NamedTuple):
    """One level's contribution for a batch: ``log_prob`` (N,) nats and the flow's output (latent, statistics)."""

    log_prob: Tensor
    out: FlowOutput


class Objective(NamedTuple):
    """What the trainer minimises: the negative log-likelihood (N,) nats, a regulariser (a scalar) and the ODE
    function evaluations of the step (None for a model without ODEs)."""

    nll: Tensor
    reg: Tensor
    nfe: int | None


@dataclass
class BitsPerDim:
    """Bits/dim averaged over ``images``: per evaluated level, its contribution to the image's bits/dim
    (``levels``, they sum to ``bits_per_dim``; all levels: the image's bits/dim) and its bits/dim over its own
    dimensions (``own``); ``nfe`` holds each level's ODE function evaluations on the last batch (or None)."""

    bits_per_dim: float
    levels: list[float]
    own: list[float]
    level_ids: list[int]
    images: int
    nfe: list[int] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: the total, one row per evaluated level, and the number of images."""
        rows = []
        for i, (level, b, own) in enumerate(zip(self.level_ids, self.levels, self.own)):
            row = {"level": level, "bits_per_dim": b, "own_bits_per_dim": own}
            if self.nfe is not None:
                row["nfe"] = self.nfe[i]
            rows.append(row)
        return {"bits_per_dim": self.bits_per_dim, "levels": rows, "images": self.images}


def standard_level_term(out: FlowOutput, extra_logdet: Tensor | None = None) -> LevelTerm:
    """The level term of a flow onto a standard normal: ``log N(z) + logdet`` (+ a fixed map's log-det)."""
    lp = standard_normal_logp(out.z) + out.logdet
    return LevelTerm(lp if extra_logdet is None else lp + extra_logdet, out)


__all__ = ["BitsPerDim", "LevelTerm", "Objective", "standard_level_term"]
