"""MRCNF (Voleti et al. 2021): the wavelet factorisation with a continuous normalizing flow per level.

Level 0 is an unconditional CNF on the base image (after a logit transform), level l ≥ 1 a CNF on the detail bands
of one Haar step conditioned on its low-pass image (concatenated to the ODE state at the first convolution); every
CNF block sits behind a data-initialised ActNorm. The Haar step is the ``unimodular`` one, whose log-det is 0, so
the per-level terms add up with no correction, and every bits/dim reported is an image bits/dim of a
wavelet-consistent pyramid (never a joint-pyramid figure).
"""

from __future__ import annotations

from waveletflow.flows import cnf_stack
from waveletflow.models.config import MRCNFConfig
from waveletflow.models.wavelet import WaveletModel


def mrcnf(config: MRCNFConfig) -> WaveletModel:
    """Build an MRCNF from its config (model-wide settings, overridden per level by ``levels[l]``).

    >>> from waveletflow.models.config import mrcnf_config
    >>> mrcnf(mrcnf_config((1, 8, 8), 5, base_size=4, hidden=[8])).level_dims
    [16, 48]
    """
    c = config.image_shape[0]
    flows = []
    for level in range(len(config.levels)):
        lc = config.level_settings(level)
        flows.append(cnf_stack(
            c if level == 0 else 3 * c, 0 if level == 0 else c, n_blocks=lc.cnf_blocks, actnorm=lc.actnorm,
            logit_alpha=config.alpha if level == 0 else None, hidden=tuple(lc.hidden), end_time=lc.end_time,
            steer=lc.steer, divergence=config.divergence, noise=config.noise, train_solver=config.train_solver,
            eval_solver=config.eval_solver, adjoint=config.adjoint,
        ))
    return WaveletModel(flows[0], flows[1:], "unimodular", image_shape=config.image_shape, n_bits=config.n_bits,
                        wavelet=config.wavelet, model_type="mrcnf", config=config, kinetic=config.kinetic,
                        jacobian=config.jacobian)
