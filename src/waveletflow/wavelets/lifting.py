"""Wavelets past Haar, by lifting: CDF 5/3 (LeGall, JPEG 2000's lossless wavelet) and CDF 9/7 (JPEG 2000's lossy
one), exactly invertible, with exact log-dets.

One 1-D step splits a signal into its even samples ``s`` and odd samples ``d`` and applies lifting steps in turn,
each a shear of determinant 1 (Sweldens 1996; Daubechies & Sweldens 1998)::

    predict   d[n] += a · (s[n] + s[n+1])
    update    s[n] += b · (d[n-1] + d[n])

then scales ``s`` by ``k_low`` and ``d`` by ``k_high`` (log-det ``(N/2)·log|k_low·k_high|``). The scales are
PyWavelets' normalisation of ``bior2.2`` / ``bior4.4``: with ``boundary="periodic"`` one step equals
``pywt.dwt(x, w, mode="periodization")``; with ``boundary="symmetric"`` (whole-sample symmetric extension, the
default) it equals ``pywt.dwt(x, w, mode="reflect")`` without its extra boundary coefficients (1 at each end for
``bior2.2``, 2 for ``bior4.4``). Both boundaries are exact and invertible for every even length.

A 2-D step applies the 1-D step along the width, then along the height, and orders the bands as
:func:`waveletflow.wavelets.haar` does (channel ``3c + k`` holds ``cH``, ``cV``, ``cD`` of channel ``c``: detail
along the height, along the width, along both). The three normalisations of the Haar step apply on top
(``orthonormal``: PyWavelets' scales; ``average``: the low-pass halved, so that the low-pass of a constant image is
that constant; ``unimodular``: the low-pass halved and the details scaled by ``2^(1/3)``, log-det 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from waveletflow.errors import UserInputError
from waveletflow.wavelets.haar import CONVENTIONS, LOGDET_PER_LOW, SCALES, check_convention, haar, inverse_haar

#: the wavelets a model can use (``haar`` is :func:`waveletflow.wavelets.haar`)
WAVELETS = ("haar", "cdf53", "cdf97")
BOUNDARIES = ("symmetric", "periodic")


@dataclass(frozen=True)
class Lifting:
    """A factorisation into lifting steps: ``("predict", a)`` or ``("update", b)`` in order, then the scales."""

    name: str
    steps: tuple[tuple[str, float], ...]
    k_low: float
    k_high: float
    #: PyWavelets' name of the same wavelet
    pywt_name: str
    #: how far (in samples of a step's input) a step's outputs reach beyond their own pair of samples
    reach: int


# Daubechies & Sweldens (1998), §7.8: CDF 9/7; ζ = √2 / K, K the low-pass's gain at zero frequency.
_ALPHA = -1.586134342059924
_BETA = -0.052980118572961
_GAMMA = 0.882911075530934
_DELTA = 0.443506852043971
_K97 = 1.230174104914001

LIFTINGS = {
    "cdf53": Lifting("cdf53", (("predict", -0.5), ("update", 0.25)), math.sqrt(2.0), -1.0 / math.sqrt(2.0),
                     "bior2.2", 2),
    "cdf97": Lifting("cdf97", (("predict", _ALPHA), ("update", _BETA), ("predict", _GAMMA), ("update", _DELTA)),
                     math.sqrt(2.0) / _K97, -_K97 / math.sqrt(2.0), "bior4.4", 4),
}


def check_wavelet(wavelet: str) -> None:
    """Raise :class:`~waveletflow.errors.UserInputError` unless ``wavelet`` is one of :data:`WAVELETS`."""
    if wavelet not in WAVELETS:
        raise UserInputError(f"unknown wavelet {wavelet!r}; choose one of {', '.join(WAVELETS)}")


def _check_boundary(boundary: str) -> None:
    if boundary not in BOUNDARIES:
        raise UserInputError(f"unknown boundary {boundary!r}; choose one of {', '.join(BOUNDARIES)}")


def _next(s: Tensor, boundary: str) -> Tensor:
    """``s[n+1]`` along the last dimension (``s[N] = s[N-1]`` symmetric, ``s[0]`` periodic)."""
    if boundary == "periodic":
        return torch.roll(s, -1, dims=-1)
    return torch.cat((s[..., 1:], s[..., -1:]), dim=-1)


def _prev(d: Tensor, boundary: str) -> Tensor:
    """``d[n-1]`` along the last dimension (``d[-1] = d[0]`` symmetric, ``d[N-1]`` periodic)."""
    if boundary == "periodic":
        return torch.roll(d, 1, dims=-1)
    return torch.cat((d[..., :1], d[..., :-1]), dim=-1)


def lift(x: Tensor, wavelet: str, boundary: str = "symmetric") -> tuple[Tensor, Tensor]:
    """One unscaled 1-D analysis step along the last dimension (even length): ``(s, d)``.

    >>> s, d = lift(torch.ones(1, 8, dtype=torch.float64), "cdf53")
    >>> s.tolist(), d.tolist()  # a constant passes the low-pass unchanged, the high-pass removes it
    ([[1.0, 1.0, 1.0, 1.0]], [[0.0, 0.0, 0.0, 0.0]])
    """
    _check_boundary(boundary)
    if x.shape[-1] % 2:
        raise UserInputError(f"a wavelet step needs an even length, got {x.shape[-1]}")
    s, d = x[..., 0::2], x[..., 1::2]
    for kind, c in LIFTINGS[wavelet].steps:
        if kind == "predict":
            d = d + c * (s + _next(s, boundary))
        else:
            s = s + c * (_prev(d, boundary) + d)
    return s, d


def unlift(s: Tensor, d: Tensor, wavelet: str, boundary: str = "symmetric") -> Tensor:
    """Exact inverse of :func:`lift`: the steps undone in reverse order, the samples interleaved."""
    _check_boundary(boundary)
    for kind, c in reversed(LIFTINGS[wavelet].steps):
        if kind == "predict":
            d = d - c * (s + _next(s, boundary))
        else:
            s = s - c * (_prev(d, boundary) + d)
    return torch.stack((s, d), dim=-1).flatten(-2)


def dwt2(x: Tensor, wavelet: str = "haar", convention: str = "average",
         boundary: str = "symmetric") -> tuple[Tensor, Tensor, Tensor]:
    """One 2-D wavelet step, as :func:`~waveletflow.wavelets.haar` (which it is for ``wavelet="haar"``).

    Args:
        x: (N, C, H, W) with H and W even.
    Returns:
        ``(low, detail, logdet)``: low (N, C, H/2, W/2), detail (N, 3C, H/2, W/2) (channel ``3c + k`` = cH, cV,
        cD of channel c), and logdet (N,) the exact log|det| of the map.

    >>> x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    >>> low, detail, logdet = dwt2(x, "cdf97")
    >>> tuple(low.shape), tuple(detail.shape), torch.allclose(idwt2(low, detail, "cdf97"), x)
    ((2, 1, 4, 4), (2, 3, 4, 4), True)
    >>> torch.allclose(dwt2(torch.ones(1, 1, 8, 8), "cdf53")[0], torch.ones(1, 1, 4, 4))  # average: DC gain 1
    True
    """
    check_wavelet(wavelet)
    check_convention(convention)
    if wavelet == "haar":
        return haar(x, convention)
    if x.dim() != 4:
        raise UserInputError(f"a wavelet step expects a 4-D tensor (N, C, H, W), got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    if h % 2 or w % 2:
        raise UserInputError(f"a wavelet step needs even height and width, got {h}×{w}")
    lf = LIFTINGS[wavelet]
    s, d = lift(x, wavelet, boundary)  # along the width
    ll, da = lift(s.transpose(-1, -2), wavelet, boundary)  # along the height: low-pass, detail along the height
    ad, dd = lift(d.transpose(-1, -2), wavelet, boundary)
    s_low, s_det = SCALES[convention]
    low = ll.transpose(-1, -2) * (lf.k_low * lf.k_low * s_low)
    mixed = lf.k_low * lf.k_high * s_det
    detail = torch.stack((da.transpose(-1, -2) * mixed, ad.transpose(-1, -2) * mixed,
                          dd.transpose(-1, -2) * (lf.k_high * lf.k_high * s_det)), dim=2)
    logdet = torch.full((n,), c * (h // 2) * (w // 2) * logdet_per_low(wavelet, convention), dtype=x.dtype,
                        device=x.device)
    return low, detail.reshape(n, 3 * c, h // 2, w // 2), logdet


def idwt2(low: Tensor, detail: Tensor, wavelet: str = "haar", convention: str = "average",
          boundary: str = "symmetric") -> Tensor:
    """Exact inverse of :func:`dwt2`: ``idwt2(*dwt2(x, w)[:2], w) == x`` (up to float rounding)."""
    check_wavelet(wavelet)
    check_convention(convention)
    if wavelet == "haar":
        return inverse_haar(low, detail, convention)
    if low.dim() != 4 or detail.dim() != 4:
        raise UserInputError("a wavelet synthesis step expects 4-D tensors (N, C, H, W) and (N, 3C, H, W)")
    n, c, h, w = low.shape
    if tuple(detail.shape) != (n, 3 * c, h, w):
        raise UserInputError(f"detail must have shape {(n, 3 * c, h, w)}, got {tuple(detail.shape)}")
    lf = LIFTINGS[wavelet]
    s_low, s_det = SCALES[convention]
    mixed = lf.k_low * lf.k_high * s_det
    det = detail.reshape(n, c, 3, h, w)
    ll = (low / (lf.k_low * lf.k_low * s_low)).transpose(-1, -2)
    da = (det[:, :, 0] / mixed).transpose(-1, -2)
    ad = (det[:, :, 1] / mixed).transpose(-1, -2)
    dd = (det[:, :, 2] / (lf.k_high * lf.k_high * s_det)).transpose(-1, -2)
    s = unlift(ll, da, wavelet, boundary).transpose(-1, -2)
    d = unlift(ad, dd, wavelet, boundary).transpose(-1, -2)
    return unlift(s, d, wavelet, boundary)


def logdet_per_low(wavelet: str, convention: str) -> float:
    """log|det| of one 2-D step per low-pass value (per 2×2 block of one channel).

    >>> [round(logdet_per_low(w, "average"), 12) for w in WAVELETS] == [round(math.log(0.5), 12)] * 3
    True
    """
    check_wavelet(wavelet)
    check_convention(convention)
    if wavelet == "haar":
        return LOGDET_PER_LOW[convention]
    lf = LIFTINGS[wavelet]
    s_low, s_det = SCALES[convention]
    # the four bands of a block: k_low² s_low, (k_low k_high s_det)², k_high² s_det
    return math.log(abs(lf.k_low**2 * s_low * (lf.k_low * lf.k_high * s_det) ** 2 * lf.k_high**2 * s_det))


def crop_margin(wavelet: str, steps: int) -> int:
    """Pixels to add on every side of a crop (aligned to ``2^steps``) so that the coefficients ``steps`` 2-D steps
    down inside it equal those of the whole image: none for Haar, whose blocks do not overlap; for a lifted
    wavelet ``reach · 2^steps`` (its coefficients reach ``reach · (2^steps − 1)`` pixels beyond their block),
    with the periodic boundary (a window of the periodic image; see the tests).

    >>> crop_margin("haar", 3), crop_margin("cdf53", 1), crop_margin("cdf97", 2)
    (0, 4, 16)
    """
    check_wavelet(wavelet)
    return 0 if wavelet == "haar" else LIFTINGS[wavelet].reach << steps


__all__ = ["BOUNDARIES", "CONVENTIONS", "LIFTINGS", "Lifting", "WAVELETS", "check_wavelet", "dwt2", "idwt2", "lift",
           "crop_margin", "logdet_per_low", "unlift"]
