"""Samples that are never silently non-finite: the rows whose image overflowed are drawn again, a bounded number
of times, and counted."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import Tensor

from waveletflow.errors import UserInputError

log = logging.getLogger("waveletflow")

#: rounds of drawing again the samples that came out non-finite (:func:`finite_draws`)
MAX_REDRAWS = 10


class NonFiniteSamples(UserInputError):
    """Some samples stayed non-finite (the model's inverse overflows at this temperature)."""


def finite_draws(draw: Callable[[Tensor], Tensor], n: int, redrawn: list[int] | None = None,
                 rounds: int | None = None) -> Tensor:
    """``draw(rows)`` of every row 0..n-1 (images, one per row), with the rows whose image is not finite drawn
    again (``draw`` of those rows) up to ``rounds`` times (default :data:`MAX_REDRAWS`); a warning says how many
    were, ``redrawn`` receives the count, and :class:`NonFiniteSamples` is raised if some stay non-finite."""
    rounds = MAX_REDRAWS if rounds is None else rounds
    x = draw(torch.arange(n))
    count = 0
    for attempt in range(rounds + 1):
        bad = (~torch.isfinite(x.reshape(n, -1)).all(dim=1)).nonzero().flatten()
        if not len(bad):
            break
        if attempt == rounds:
            raise NonFiniteSamples(
                f"{len(bad)} of {n} samples stayed non-finite" + (f" after {rounds} redraws" if rounds else "")
                + ": the model's inverse overflows there (sample at a lower --temperature, or train it longer)")
        count += len(bad)
        x[bad] = draw(bad).to(x.dtype)
    if count:
        log.warning("%d of %d samples were not finite (the model's inverse overflowed) and were drawn again", count,
                    n)
    if redrawn is not None:
        redrawn.append(count)
    return x
