"""MRCNF (Voleti et al. 2021): the wavelet factorisation with a continuous normalizing flow per level (SPEC §4).

Same structure and API as :class:`~waveletflow.models.waveletflow.WaveletFlow`: level 0 is an unconditional CNF
on the base image (after a logit transform), level l ≥ 1 a CNF on the detail bands of one Haar step conditioned
on its low-pass image (concatenated to the ODE state at the first convolution); every CNF block sits behind a
data-initialised ActNorm. Levels train on their own or jointly (the trainer's ``joint``). The Haar step is the
``unimodular`` one, whose log-det is 0, so the per-level terms add up with no correction. Every bits/dim it
reports is an image bits/dim of a wavelet-consistent pyramid (never a joint-pyramid figure).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from waveletflow.errors import UserInputError
from waveletflow.layers import ActNorm, Sequential
from waveletflow.layers.cnf import CNF, SOLVERS, LogitTransform, SolverConfig
from waveletflow.models.waveletflow import WaveletFlow
from waveletflow.wavelets import pyramid_sizes

MRCNF_DEFAULTS: dict[str, Any] = {
    "convention": "unimodular",
    "alpha": 0.05,
    "cnf_blocks": 1,  # CNF blocks per level (20 in the paper's CIFAR-10 model)
    "actnorm": True,  # a data-initialised ActNorm in front of every CNF block
    "hidden": [32, 32, 32],
    "end_time": 1.0,
    "steer": 0.0,
    "divergence": "hutchinson",
    "noise": "gaussian",
    "kinetic": 0.01,
    "jacobian": 0.01,
    "train_solver": {"method": "bosh3", "atol": 1e-3, "rtol": 1e-3},
    "eval_solver": {"method": "dopri5", "atol": 1e-5, "rtol": 1e-5},
    "adjoint": False,
}


def mrcnf_config(image_shape, n_bits: int = 8, **overrides: Any) -> dict[str, Any]:
    """MRCNF config: base 8×8 where the size is a power of two (as in the paper), 7×7 for 28×28."""
    c, h, w = (int(v) for v in image_shape)
    base = overrides.pop("base_size", None)
    if base is None:
        base = h
        while base > 8 and base % 2 == 0:
            base //= 2
    n_detail = len(pyramid_sizes((h, w), (base, base * w // h))) - 1
    cfg = copy.deepcopy(MRCNF_DEFAULTS)
    cfg.update({"image_shape": [c, h, w], "n_bits": int(n_bits), "base_size": base,
                "base": {}, "levels": [{} for _ in range(n_detail)]})
    cfg.update(overrides)
    return cfg


class MRCNF(WaveletFlow):
    """Multi-resolution continuous normalizing flow.

    >>> m = MRCNF(mrcnf_config((1, 8, 8), 5, base_size=4, hidden=[8]))
    >>> m.level_dims
    [16, 48]
    """

    model_type = "mrcnf"

    def __init__(self, config: dict[str, Any]):
        config = {**copy.deepcopy(MRCNF_DEFAULTS), **config}
        if config["convention"] != "unimodular":
            raise UserInputError("MRCNF uses the unimodular Haar step (SPEC §4)")
        super().__init__(config)

    def _cnf(self, channels: int, cond_channels: int, level_cfg: dict[str, Any]) -> CNF:
        cfg = {**self.config, **{k: v for k, v in level_cfg.items() if k in MRCNF_DEFAULTS}}
        return CNF(
            channels, cond_channels, hidden=tuple(cfg["hidden"]), end_time=cfg["end_time"],
            divergence=cfg["divergence"], noise=cfg["noise"], steer=cfg["steer"],
            train_solver=SolverConfig(**cfg["train_solver"]), eval_solver=SolverConfig(**cfg["eval_solver"]),
            adjoint=cfg["adjoint"],
        )

    def _blocks(self, channels: int, cond_channels: int, cfg: dict[str, Any]) -> list[nn.Module]:
        """``cnf_blocks`` CNFs, each behind an ActNorm unless ``actnorm`` is off.

        The ActNorm matters: a zero-initialised CNF starts as the identity, and detail coefficients are an
        order of magnitude narrower than N(0, 1), so without it the ODE must first learn a scale.
        """
        actnorm = cfg.get("actnorm", self.config["actnorm"])
        out: list[nn.Module] = []
        for _ in range(cfg.get("cnf_blocks", self.config["cnf_blocks"])):
            if actnorm:
                out.append(ActNorm(channels))
            out.append(self._cnf(channels, cond_channels, cfg))
        return out

    def _build_base(self, base_shape: tuple[int, int, int], cfg: dict[str, Any]) -> nn.Module:
        c = base_shape[0]
        return Sequential([LogitTransform(c, self.config["alpha"]), *self._blocks(c, 0, cfg)])

    def _build_level(self, channels: int, cfg: dict[str, Any]) -> nn.Module:
        return Sequential(self._blocks(3 * channels, channels, cfg))

    def level_objective(self, level: int, x: Tensor) -> tuple[Tensor, Tensor]:
        """Negative log-likelihood (N,) and the RNODE penalty (a scalar) of one level."""
        nll = self.level_loss(level, x)
        reg = x.new_zeros(())
        for m in self.levels[level].modules():
            if isinstance(m, CNF) and m.last_regularizers:
                reg = reg + self.config["kinetic"] * m.last_regularizers["kinetic"].mean()
                reg = reg + self.config["jacobian"] * m.last_regularizers["jacobian"].mean()
        return nll, reg

    def set_eval_solver(self, method: str | None = None, tol: float | None = None) -> None:
        """Evaluate (log_prob, encode, decode, sample) with another ODE solver and/or ``atol = rtol = tol``."""
        if method is not None and method not in SOLVERS:
            raise UserInputError(f"unknown ODE solver {method!r}; choose one of {', '.join(SOLVERS)}")
        if tol is not None and not tol > 0:
            raise UserInputError(f"the ODE tolerance must be positive, got {tol}")
        for m in self.modules():
            if isinstance(m, CNF):
                old = m.eval_solver
                m.eval_solver = SolverConfig(method or old.method, tol or old.atol, tol or old.rtol)

    def nfe(self, levels: Sequence[int] | None = None) -> int:
        """Function evaluations of the last solves of ``levels`` (all by default), summed over their CNFs."""
        chosen = range(len(self.levels)) if levels is None else levels
        return sum(m.last_nfe for v in chosen for m in self.levels[v].modules() if isinstance(m, CNF))
