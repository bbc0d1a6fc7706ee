"""Flows composed from the invertible layers: Glow steps, stacks and the multi-scale Glow."""

from waveletflow.flows.glow import FlowStep, MultiScaleGlow, data_dependent_init, flow_stack, standard_normal_logp

__all__ = ["FlowStep", "MultiScaleGlow", "data_dependent_init", "flow_stack", "standard_normal_logp"]
