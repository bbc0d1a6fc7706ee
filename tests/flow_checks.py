"""One numerical harness for every invertible map: round trip and log-det against the autograd Jacobian."""

from __future__ import annotations

import torch


def randomize(module: torch.nn.Module, scale: float = 0.05, seed: int = 1) -> None:
    """Perturb every parameter (zero-initialised ones included) so the map is far from the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
        for m in module.modules():
            if hasattr(m, "initialized"):
                m.initialized.fill_(True)


def flat_jacobian_logdet(fn, x: torch.Tensor) -> torch.Tensor:
    """log|det| of the Jacobian of ``fn`` (flattened output) at one sample ``x`` (batch of 1)."""
    jac = torch.autograd.functional.jacobian(lambda v: fn(v.reshape(x.shape)).reshape(-1), x.reshape(-1))
    return torch.linalg.slogdet(jac)[1]
