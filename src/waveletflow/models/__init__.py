"""Model types sharing one interface: Glow and Wavelet Flow."""

from waveletflow.models.base import BitsPerDim, FlowModel
from waveletflow.models.glow import Glow, glow_config
from waveletflow.models.io import build_model, load, model_types
from waveletflow.models.mrcnf import MRCNF, mrcnf_config
from waveletflow.models.waveletflow import PRESETS, WaveletFlow, waveletflow_config

__all__ = [
    "PRESETS",
    "BitsPerDim",
    "FlowModel",
    "Glow",
    "MRCNF",
    "WaveletFlow",
    "build_model",
    "glow_config",
    "load",
    "model_types",
    "mrcnf_config",
    "waveletflow_config",
]
