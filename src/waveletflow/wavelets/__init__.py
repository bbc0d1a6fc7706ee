"""Exact Haar transforms and pyramids (SPEC §2)."""

from waveletflow.wavelets.haar import (
    CONVENTIONS,
    Pyramid,
    haar,
    haar_logdet_per_low,
    haar_pyramid,
    inverse_haar,
    inverse_haar_pyramid,
    pyramid_sizes,
)

__all__ = [
    "CONVENTIONS",
    "Pyramid",
    "haar",
    "haar_logdet_per_low",
    "haar_pyramid",
    "inverse_haar",
    "inverse_haar_pyramid",
    "pyramid_sizes",
]
