"""Exact wavelet steps and pyramids: Haar under three normalisations (Yu et al. 2020; Voleti et al. 2021), and
CDF 5/3 and 9/7 by lifting under the same normalisations."""

from waveletflow.wavelets.haar import (
    CONVENTIONS,
    Pyramid,
    haar,
    haar_logdet_per_low,
    inverse_haar,
    pyramid_sizes,
)
from waveletflow.wavelets.lifting import BOUNDARIES, WAVELETS, check_wavelet, crop_margin, dwt2, idwt2, logdet_per_low
from waveletflow.wavelets.pyramid import haar_pyramid, inverse_haar_pyramid, inverse_wavelet_pyramid, wavelet_pyramid

__all__ = [
    "BOUNDARIES",
    "CONVENTIONS",
    "WAVELETS",
    "Pyramid",
    "check_wavelet",
    "crop_margin",
    "dwt2",
    "haar",
    "haar_logdet_per_low",
    "haar_pyramid",
    "idwt2",
    "inverse_haar",
    "inverse_haar_pyramid",
    "inverse_wavelet_pyramid",
    "logdet_per_low",
    "pyramid_sizes",
    "wavelet_pyramid",
]
