"""Lower precision for the networks inside flow layers, never for the invertible maps themselves.

A coupling layer's shift and scale, and a conditioning network's features, are computed by ordinary networks:
any function of the conditioning half gives an exactly invertible coupling with an exact log-det. Running those
networks in bfloat16 (autocast) therefore changes *which* bijection a step computes, not whether its log-density
is exact: the log-dets, ActNorm, the 1×1 convolutions, the Haar steps, the priors and the losses stay float32, as
in TarFlow (Zhai et al. 2024). Training uses it (``--precision bf16``); evaluation and sampling run in float32.

>>> import torch
>>> from waveletflow.layers import AffineCoupling
>>> layer = AffineCoupling(4, width=8)
>>> x = torch.randn(2, 4, 3, 3)
>>> with network_precision(layer, torch.bfloat16):
...     y, logdet = layer(x)
>>> y.dtype, logdet.dtype, layer.net_dtype is None
(torch.float32, torch.float32, True)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

__all__ = ["NetworkPrecision", "exact_float32", "network_precision", "precision_layers", "run_network"]


class NetworkPrecision:
    """Mixed into a layer whose inner networks may run in lower precision: ``net_dtype`` (None: float32) is set
    by :func:`network_precision` and read by :func:`run_network`."""

    net_dtype: torch.dtype | None = None


def run_network(layer: NetworkPrecision, net: nn.Module, x: Tensor) -> Tensor:
    """``net(x)``, under autocast to ``layer.net_dtype`` when one is set; the result in ``x``'s dtype."""
    if layer.net_dtype is None:
        return net(x)
    with torch.autocast(x.device.type, dtype=layer.net_dtype):
        out = net(x)
    return out.to(x.dtype)


def precision_layers(module: nn.Module) -> list[NetworkPrecision]:
    """The layers of ``module`` whose inner networks :func:`network_precision` switches."""
    return [m for m in module.modules() if isinstance(m, NetworkPrecision)]


@contextmanager
def network_precision(module: nn.Module | Sequence[NetworkPrecision], dtype: torch.dtype | None) -> Iterator[None]:
    """Inside the block, every inner network of ``module``'s layers (or of the layers listed, see
    :func:`precision_layers`) runs in ``dtype``; None: float32, a no-op."""
    if dtype is None:
        yield
        return
    layers = precision_layers(module) if isinstance(module, nn.Module) else list(module)
    for m in layers:
        m.net_dtype = dtype
    try:
        yield
    finally:
        for m in layers:
            m.net_dtype = None


@contextmanager
def exact_float32() -> Iterator[None]:
    """Inside the block, CUDA convolutions and matrix products run in full float32, not TF32 (PyTorch lets cuDNN
    use TF32 by default): evaluation and sampling compute the density they report. A no-op on the CPU."""
    cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = cudnn, matmul
