"""Sampling above the models: annealed sampling and super-resolution by MCMC (:mod:`~waveletflow.sampling.annealed`).

``sample(model, n, T, mcmc=MCMCOptions())`` draws each level from ``p(level | below)^(1/T²)``; without ``mcmc``
it is the model's own ``sample``.
"""

from waveletflow.models import base as _models_base
from waveletflow.sampling.annealed import MCMCProgress, annealed_levels, annealed_potential, sample, super_resolve

_models_base.ANNEALED.update(sample=sample, super_resolve=super_resolve)  # the models' deprecated ``mcmc=`` path

__all__ = ["MCMCProgress", "annealed_levels", "annealed_potential", "sample", "super_resolve"]
