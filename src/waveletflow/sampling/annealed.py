"""Annealed sampling (Yu et al. 2020): each level drawn from ``p(level | levels below)^γ``, γ = 1/T², coarse to
fine, by the No-U-Turn Sampler in the level's latent space, one chain per image.

A model gives its levels' synthesis (:meth:`~waveletflow.models.FlowModel.invert_level`) and its density; this
module, above the models, makes samplers of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from waveletflow.errors import UserInputError
from waveletflow.mcmc import ChainStats, MCMCOptions, nuts
from waveletflow.models import FlowModel
from waveletflow.models.draws import finite_draws

#: ``progress(level, iteration, iterations)``, called by annealed sampling after every MCMC iteration
MCMCProgress = Callable[[int, int, int], None]


def annealed_potential(model: FlowModel, level: int, z: Tensor, low: Tensor | None, temperature: float) -> Tensor:
    """Minus the log target of annealed sampling of ``level`` at latents ``z`` (N, D_l) given the image below it
    ``low`` (None for level 0), up to a constant: with γ = 1/T², the target ``p(x_l | low)^γ`` in latent space is
    ``γ·log N(z; 0, I) + (γ − 1)·log|det ∂z/∂x_l|`` (N,)."""
    gamma = 1.0 / temperature**2
    u = 0.5 * gamma * (z * z).sum(1)
    if gamma != 1.0:  # log|det ∂z/∂x| = −log|det ∂x/∂z|, the log-det of the level's synthesis
        u = u + (gamma - 1.0) * model.invert_level(level, z, low)[1]
    return u


def annealed_levels(model: FlowModel, n: int, low: Tensor | None, first: int, last: int, temps: list[float],
                    mcmc: MCMCOptions, generator: torch.Generator | None = None, report: list[dict] | None = None,
                    progress: MCMCProgress | None = None) -> Tensor:
    """Annealed sampling of levels ``first..last`` given ``low`` (the image below ``first``; None from level 0),
    :meth:`~waveletflow.models.FlowModel.chunk_size` chains at a time; the image after level ``last``.
    ``report`` (a list) receives each level's chain statistics."""
    if model.continuous:
        raise UserInputError(f"MCMC sampling is not available for {model.model_type} models: each step would need "
                             "the exact log-determinant of an ODE and its gradient; sample without --mcmc")
    if any(temps[v] <= 0 for v in range(first, last + 1)):
        raise UserInputError("MCMC sampling needs temperatures above 0")
    p = next(model.parameters())
    step = model.chunk_size()
    parts: dict[int, list[ChainStats]] = {v: [] for v in range(first, last + 1)}
    seconds = dict.fromkeys(parts, 0.0)
    was_training = model.training
    model.eval()
    outs = []
    try:
        for i in range(0, n, step):
            m = min(step, n - i)
            x = None if low is None else low[i : i + m]
            for level in range(first, last + 1):
                t0 = time.perf_counter()
                z0 = temps[level] * torch.randn(m, model.level_dims[level], generator=generator, dtype=p.dtype)

                def potential(z: Tensor, rows: Tensor, level: int = level, x: Tensor | None = x,
                              t: float = temps[level]) -> Tensor:  # chains are images: rows of the low-pass
                    return annealed_potential(model, level, z, None if x is None else x[rows], t)

                tick = None if progress is None else (lambda k, total, lv=level: progress(lv, k, total))
                z, stats = nuts(potential, z0.to(p.device), mcmc, generator, tick, rows=True)
                parts[level].append(stats)
                with torch.no_grad():
                    x = model.invert_level(level, z, x)[0]
                seconds[level] += time.perf_counter() - t0
            outs.append(x)
    finally:
        model.train(was_training)
    if report is not None:
        names = model.level_names()
        for level, stats in parts.items():
            report.append({"level": level, "name": names[level], "temperature": temps[level],
                           **ChainStats.combine(stats).to_dict(), "seconds": round(seconds[level], 3)})
    return torch.cat(outs)


def sample(model: FlowModel, n: int, temperature: float | Sequence[float] = 1.0,
           generator: torch.Generator | None = None, mcmc: MCMCOptions | None = None,
           report: list[dict] | None = None, progress: MCMCProgress | None = None,
           redrawn: list[int] | None = None, solver=None, denoise: bool = False) -> Tensor:
    """``n`` images (N, C, H, W) in [0, 1). With ``mcmc`` each level is drawn from ``p(level | levels below)^γ``,
    γ = 1/T², coarse to fine, by NUTS started from the scaled noise (T = 1 is exact sampling); ``report`` (a list)
    receives each level's chain statistics, ``progress`` is called after every MCMC iteration. Without ``mcmc``,
    :meth:`model.sample <waveletflow.models.FlowModel.sample>` (latents at temperature T).

    A non-finite image is never returned: :class:`~waveletflow.models.draws.NonFiniteSamples` is raised (a chain is
    not drawn again alone); ``redrawn`` receives the count of images drawn again (0 with ``mcmc``). ``denoise``:
    each image goes through :meth:`model.denoise <waveletflow.models.FlowModel.denoise>` (Tweedie's step with the
    model's score; models trained with noise) before it is clamped.

    >>> import torch, waveletflow
    >>> from waveletflow.mcmc import MCMCOptions
    >>> model = waveletflow.build_model("waveletflow", waveletflow.models.waveletflow_config((1, 4, 4), 5))
    >>> x = sample(model, 2, 0.9, torch.Generator().manual_seed(0), MCMCOptions(steps=2, warmup=2))
    >>> tuple(x.shape), bool(((x >= 0) & (x < 1)).all())
    ((2, 1, 4, 4), True)
    """
    if mcmc is None:
        return model.sample(n, temperature, generator, solver, redrawn=redrawn, denoise=denoise)
    if denoise:
        model.check_denoise()
    with torch.no_grad():
        x = annealed_levels(model, n, None, 0, len(model.levels) - 1, model.temperatures(temperature), mcmc,
                            generator, report, progress)
    if denoise:
        x = model.denoise(x, solver)
    return finite_draws(lambda rows: x if len(rows) == n else x[rows], n, redrawn, rounds=0).clamp(0.0, 1.0 - 1e-6)


def super_resolve(model: FlowModel, low: np.ndarray | Tensor, temperature: float | Sequence[float] = 1.0,
                  generator: torch.Generator | None = None, size: int | None = None,
                  mcmc: MCMCOptions | None = None, report: list[dict] | None = None,
                  progress: MCMCProgress | None = None, redrawn: list[int] | None = None,
                  solver=None) -> np.ndarray:
    """uint8 NHWC images at full size (or the level height ``size``) whose low-pass is the uint8 NHWC ``low``
    (models with wavelet levels); with ``mcmc`` each missing level drawn by annealed sampling (see :func:`sample`),
    without it :meth:`model.super_resolve <waveletflow.models.WaveletModel.super_resolve>`."""
    if mcmc is None:
        return model.super_resolve(low, temperature, generator, solver, size, redrawn=redrawn)
    if not hasattr(model, "superres_task"):
        return model.super_resolve(low)  # the model's own one-line refusal
    task = model.superres_task(low, size)
    n = len(task.low)
    with torch.no_grad():
        high = annealed_levels(model, n, task.low, task.first, task.last, model.temperatures(temperature), mcmc,
                               generator, report, progress)
    return model.superres_output(finite_draws(lambda rows: high if len(rows) == n else high[rows], n, redrawn,
                                              rounds=0), task)
