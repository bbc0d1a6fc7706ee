"""Invertible layers sharing one contract (:class:`InvertibleLayer`): ``forward(x, cond=None) -> (y, logdet)``,
``inverse(y, cond=None) -> (x, logdet)``, and ``transform`` / ``inverse_transform`` returning a :class:`FlowOutput`.
"""

from waveletflow.layers.actnorm import ActNorm
from waveletflow.layers.base import FlowOutput, InvertibleLayer, Sequential, Shape
from waveletflow.layers.cnf import CNF, LogitTransform
from waveletflow.layers.conditioning import EncodedCondition
from waveletflow.layers.conv1x1 import InvConv1x1
from waveletflow.layers.coupling import COUPLING_NETS, COUPLINGS, AffineCoupling, CouplingNet, GlowCouplingNet, ZeroConv2d
from waveletflow.layers.haar import HaarStep
from waveletflow.layers.precision import network_precision
from waveletflow.layers.reshape import Squeeze
from waveletflow.layers.solver import DEFAULT_EVAL_SOLVER, DEFAULT_TRAIN_SOLVER, SOLVERS, SolverConfig
from waveletflow.layers.split import SplitPrior

__all__ = [
    "COUPLINGS",
    "COUPLING_NETS",
    "GlowCouplingNet",
    "CNF",
    "DEFAULT_EVAL_SOLVER",
    "DEFAULT_TRAIN_SOLVER",
    "SOLVERS",
    "ActNorm",
    "AffineCoupling",
    "CouplingNet",
    "EncodedCondition",
    "FlowOutput",
    "HaarStep",
    "InvConv1x1",
    "InvertibleLayer",
    "LogitTransform",
    "Sequential",
    "Shape",
    "SolverConfig",
    "SplitPrior",
    "Squeeze",
    "ZeroConv2d",
    "network_precision",
]
