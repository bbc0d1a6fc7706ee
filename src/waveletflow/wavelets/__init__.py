"""Exact Haar transforms and pyramids under three normalisations (Yu et al. 2020; Voleti et al. 2021)."""

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
