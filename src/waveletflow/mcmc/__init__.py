"""Markov chain Monte Carlo on tensors: a vectorised No-U-Turn Sampler, one chain per row (no model imports)."""

from waveletflow.mcmc.nuts import ChainStats, MCMCOptions, nuts, potential_and_grad

__all__ = ["ChainStats", "MCMCOptions", "nuts", "potential_and_grad"]
