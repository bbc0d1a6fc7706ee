"""Stacks of continuous normalizing flows: the flow of one MRCNF level (Voleti et al. 2021)."""

from __future__ import annotations

from typing import Any

from waveletflow.errors import UserInputError
from waveletflow.layers import CNF, ActNorm, InvertibleLayer, LogitTransform, Sequential


def cnf_stack(num_channels: int, cond_channels: int = 0, n_blocks: int = 1, actnorm: bool = True,
              logit_alpha: float | None = None, **cnf_kwargs: Any) -> Sequential:
    """[LogitTransform (when ``logit_alpha`` is not None)] + ``n_blocks`` × [ActNorm (when ``actnorm``), CNF].

    ``cnf_kwargs`` go to every :class:`~waveletflow.layers.CNF` (hidden, end_time, divergence, noise, steer,
    train_solver, eval_solver, adjoint). The data-initialised ActNorm matters: a zero-initialised CNF starts as
    the identity, and detail coefficients are an order of magnitude narrower than N(0, 1), so without it the ODE
    must first learn a scale.
    """
    if n_blocks < 1:
        raise UserInputError(f"a CNF stack needs at least one block, got {n_blocks}")
    layers: list[InvertibleLayer] = [] if logit_alpha is None else [LogitTransform(num_channels, logit_alpha)]
    for _ in range(n_blocks):
        if actnorm:
            layers.append(ActNorm(num_channels))
        layers.append(CNF(num_channels, cond_channels, **cnf_kwargs))
    return Sequential(layers)
