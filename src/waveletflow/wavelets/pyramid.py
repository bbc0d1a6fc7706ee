"""Multi-level pyramids of any wavelet of :data:`~waveletflow.wavelets.WAVELETS`: repeated 2-D steps down to a base."""

from __future__ import annotations

from torch import Tensor

from waveletflow.errors import UserInputError
from waveletflow.wavelets.haar import Pyramid, pyramid_sizes
from waveletflow.wavelets.lifting import dwt2, idwt2


def wavelet_pyramid(x: Tensor, base_size: int | tuple[int, int], wavelet: str = "haar",
                    convention: str = "average", boundary: str = "symmetric") -> Pyramid:
    """Repeated 2-D steps (:func:`~waveletflow.wavelets.dwt2`) from the full size down to ``base_size``.

    Returns a :class:`Pyramid` with ``details`` ordered coarse to fine (``details[0]`` is next to the base) and
    ``logdet`` (N,) the sum of every step's log-det.

    >>> import torch
    >>> x = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    >>> pyr = wavelet_pyramid(x, 4, "cdf53")
    >>> tuple(pyr.base.shape), [tuple(d.shape[2:]) for d in pyr.details]
    ((1, 3, 4, 4), [(4, 4), (8, 8)])
    >>> torch.allclose(inverse_wavelet_pyramid(pyr.base, pyr.details, "cdf53"), x)
    True
    """
    if x.dim() != 4:
        raise UserInputError(f"a wavelet pyramid takes a 4-D tensor (N, C, H, W), got shape {tuple(x.shape)}")
    sizes = pyramid_sizes((x.shape[2], x.shape[3]), base_size)
    details: list[Tensor] = []
    logdet = x.new_zeros(x.shape[0])
    low = x
    for _ in range(len(sizes) - 1):
        low, detail, ld = dwt2(low, wavelet, convention, boundary)
        details.append(detail)
        logdet = logdet + ld
    return Pyramid(base=low, details=details[::-1], logdet=logdet)


def inverse_wavelet_pyramid(base: Tensor, details: list[Tensor], wavelet: str = "haar",
                            convention: str = "average", boundary: str = "symmetric") -> Tensor:
    """Exact inverse of :func:`wavelet_pyramid` (details coarse to fine)."""
    x = base
    for detail in details:
        x = idwt2(x, detail, wavelet, convention, boundary)
    return x


def haar_pyramid(x: Tensor, base_size: int | tuple[int, int], convention: str = "average") -> Pyramid:
    """Repeated Haar steps from the full size down to ``base_size`` (:func:`wavelet_pyramid` of ``haar``)."""
    return wavelet_pyramid(x, base_size, "haar", convention)


def inverse_haar_pyramid(base: Tensor, details: list[Tensor], convention: str = "average") -> Tensor:
    """Exact inverse of :func:`haar_pyramid` (details coarse to fine)."""
    return inverse_wavelet_pyramid(base, details, "haar", convention)
