"""Flows composed from the invertible layers: Glow steps, stacks, the multi-scale Glow and CNF stacks."""

from waveletflow.flows.cnf import cnf_stack
from waveletflow.flows.glow import FlowStep, MultiScaleGlow, data_dependent_init, flow_stack, standard_normal_logp

__all__ = ["FlowStep", "MultiScaleGlow", "cnf_stack", "data_dependent_init", "flow_stack", "standard_normal_logp"]
