"""Model types sharing one interface: Glow, Wavelet Flow and MRCNF (the composed :class:`WaveletModel`)."""

from waveletflow.models.base import FlowModel
from waveletflow.models.terms import BitsPerDim, Objective
from waveletflow.models.config import PRESETS, glow_config, mrcnf_config, waveletflow_config
from waveletflow.models.glow import Glow
from waveletflow.models.io import load, read_model_meta, save, write_model_meta
from waveletflow.models.mrcnf import mrcnf
from waveletflow.models.registry import DEFAULT_MODEL_TYPE, MODEL_TYPES, build_model, default_config, model_type
from waveletflow.models.wavelet import WaveletModel
from waveletflow.models.waveletflow import wavelet_flow

__all__ = [
    "DEFAULT_MODEL_TYPE",
    "MODEL_TYPES",
    "PRESETS",
    "BitsPerDim",
    "FlowModel",
    "Glow",
    "Objective",
    "WaveletModel",
    "build_model",
    "default_config",
    "glow_config",
    "load",
    "model_type",
    "mrcnf",
    "mrcnf_config",
    "read_model_meta",
    "save",
    "wavelet_flow",
    "waveletflow_config",
    "write_model_meta",
]
