"""Invertible layers sharing one contract: ``forward(x, cond=None) -> (y, logdet)``, ``inverse(y, cond=None) -> x``."""

from waveletflow.layers.actnorm import ActNorm
from waveletflow.layers.base import InvertibleLayer, Sequential
from waveletflow.layers.cnf import CNF, LogitTransform, SolverConfig
from waveletflow.layers.conv1x1 import InvConv1x1
from waveletflow.layers.coupling import COUPLINGS, AffineCoupling, CouplingNet, ZeroConv2d
from waveletflow.layers.reshape import Squeeze
from waveletflow.layers.split import SplitPrior

__all__ = [
    "COUPLINGS",
    "CNF",
    "ActNorm",
    "LogitTransform",
    "SolverConfig",
    "AffineCoupling",
    "CouplingNet",
    "InvConv1x1",
    "InvertibleLayer",
    "Sequential",
    "SplitPrior",
    "Squeeze",
    "ZeroConv2d",
]
