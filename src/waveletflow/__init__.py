"""waveletflow: multi-resolution normalizing flows on images (Wavelet Flow, Glow) in PyTorch."""

__version__ = "0.1.0"

from waveletflow.errors import UserInputError
from waveletflow.metrics import bits_per_dim, level_bits_per_dim
from waveletflow.models import FlowModel, Glow, WaveletFlow, load

__all__ = ["FlowModel", "Glow", "UserInputError", "WaveletFlow", "__version__", "bits_per_dim", "level_bits_per_dim", "load"]
