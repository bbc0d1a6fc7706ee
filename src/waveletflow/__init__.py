"""waveletflow: multi-resolution normalizing flows on images (Wavelet Flow, MRCNF, Glow) in PyTorch."""

__version__ = "0.1.0"

from waveletflow.errors import UserInputError
from waveletflow.metrics import bits_per_dim, level_bits_per_dim
from waveletflow.models import FlowModel, Glow, WaveletModel, build_model, load, mrcnf, save, wavelet_flow
from waveletflow import sampling  # annealed sampling, a layer above the models

__all__ = [
    "FlowModel",
    "Glow",
    "UserInputError",
    "WaveletModel",
    "__version__",
    "bits_per_dim",
    "build_model",
    "level_bits_per_dim",
    "load",
    "mrcnf",
    "sampling",
    "save",
    "wavelet_flow",
]
