"""The interface every model type shares, so that one trainer, one evaluator and one CLI serve them all.

A model is a list of independently trainable *levels* (``model.levels``). Their log-probabilities
(``level_log_probs``) add up to the log-density of the full image, and each level can be trained on
its own through ``level_loss``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from waveletflow.data import dequantize, quantize, reduce_bits, to_tensor
from waveletflow.errors import UserInputError
from waveletflow.metrics import level_bits_per_dim

MODEL_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"


def level_dir(run_dir: str | Path, level: int) -> Path:
    """Folder of one level inside a run or a saved model."""
    return Path(run_dir) / f"level_{level:02d}"


@dataclass
class BitsPerDim:
    """Bits/dim of the full image averaged over ``images``, and per-level contributions that sum to it."""

    bits_per_dim: float
    levels: list[float]
    images: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "bits_per_dim": self.bits_per_dim,
            "levels": [{"level": i, "bits_per_dim": b} for i, b in enumerate(self.levels)],
            "images": self.images,
        }


class FlowModel(nn.Module):
    """Base class of every model type (Glow, Wavelet Flow)."""

    model_type: ClassVar[str]
    levels: nn.ModuleList

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self.config = config
        c, h, w = config["image_shape"]
        self.image_shape: tuple[int, int, int] = (int(c), int(h), int(w))
        self.n_bits: int = int(config.get("n_bits", 8))
        self.num_dims = c * h * w

    # ----- what each model type provides ---------------------------------------------------------
    @property
    def level_dims(self) -> list[int]:
        """Dimensions modelled by each level; they sum to ``C·H·W``."""
        raise NotImplementedError

    def level_names(self) -> list[str]:
        return [f"level {i}" for i in range(len(self.levels))]

    def level_log_probs(self, x: Tensor) -> Tensor:
        """(N, L) nats per level for images ``x`` (N, C, H, W) in [0, 1); the sum over levels is ``log p(x)``."""
        raise NotImplementedError

    def level_loss(self, level: int, x: Tensor) -> Tensor:
        """(N,) negative log-likelihood (nats) of one level, for ``x`` possibly cropped for that level."""
        return -self.level_log_probs(x)[:, level]

    def level_objective(self, level: int, x: Tensor) -> tuple[Tensor, Tensor]:
        """What the trainer minimises for one level: the NLL (N,) nats and a regulariser (scalar, 0 by default)."""
        return self.level_loss(level, x), x.new_zeros(())

    def objective(self, levels: Sequence[int], x: Tensor) -> tuple[Tensor, Tensor]:
        """What the trainer minimises for ``levels`` trained together: their summed NLL (N,) nats and regulariser."""
        terms = [self.level_objective(level, x) for level in levels]
        return sum(t[0] for t in terms), sum(t[1] for t in terms)

    def nfe(self, levels: Sequence[int] | None = None) -> int | None:
        """ODE function evaluations of the last forward solves of ``levels`` (all by default); None for a model
        with no ODE."""
        return None

    def level_crop(self, level: int) -> int | None:
        """Side of the random crop taken from full images to train ``level`` (None: whole images)."""
        return None

    def encode(self, x: Tensor) -> Tensor:
        """(N, D) flat latent, standard normal under the model."""
        raise NotImplementedError

    def decode(self, z: Tensor) -> Tensor:
        """Exact inverse of :meth:`encode`."""
        raise NotImplementedError

    def level_latent_dims(self) -> list[int]:
        """How the flat latent splits into levels (for per-level temperatures)."""
        return self.level_dims

    def super_resolve(self, low: np.ndarray | Tensor, temperature: float | Sequence[float] = 1.0,
                      generator: torch.Generator | None = None) -> np.ndarray:
        raise UserInputError(f"a {self.model_type} model has no wavelet levels and cannot super-resolve")

    # ----- shared behaviour ----------------------------------------------------------------------
    def log_prob(self, x: Tensor) -> Tensor:
        """(N,) log-density in nats of ``x`` (N, C, H, W) in [0, 1) (a density over [0,1)^D)."""
        self._check_images(x)
        return self.level_log_probs(x).sum(dim=1)

    def _check_images(self, x: Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise UserInputError(f"this model takes images of shape {self.image_shape} (C, H, W), got {tuple(x.shape)}")

    def _temperatures(self, temperature: float | Sequence[float]) -> list[float]:
        n = len(self.level_latent_dims())
        if isinstance(temperature, (int, float)):
            return [float(temperature)] * n
        temps = [float(t) for t in temperature]
        if len(temps) != n:
            raise UserInputError(f"give one temperature or one per level ({n}), got {len(temps)}")
        return temps

    def sample_latent(self, n: int, temperature: float | Sequence[float] = 1.0,
                      generator: torch.Generator | None = None) -> Tensor:
        """Latents ``z ~ N(0, T_l²)`` with level l's part scaled by its temperature."""
        p = next(self.parameters())
        parts = [
            t * torch.randn(n, d, generator=generator, dtype=p.dtype).to(p.device)
            for t, d in zip(self._temperatures(temperature), self.level_latent_dims())
        ]
        return torch.cat(parts, dim=1)

    @torch.no_grad()
    def sample(self, n: int, temperature: float | Sequence[float] = 1.0,
               generator: torch.Generator | None = None) -> Tensor:
        """``n`` images (N, C, H, W) in [0, 1) from latents at the given temperature (one, or one per level)."""
        x = self.decode(self.sample_latent(n, temperature, generator))
        return x.clamp(0.0, 1.0 - 1e-6)

    def to_uint8(self, x: Tensor) -> np.ndarray:
        """Images in [0, 1) → uint8 NHWC pixel values at the model's bit depth."""
        return quantize(x, self.n_bits).permute(0, 2, 3, 1).cpu().numpy().astype(np.uint8)

    def prepare(self, images: np.ndarray | Tensor, generator: torch.Generator | None = None,
                data_bits: int | None = None) -> Tensor:
        """uint8 NHWC images → dequantised (N, C, H, W) float tensor on the model's device."""
        k = to_tensor(images)
        if data_bits is not None and data_bits != self.n_bits:
            k = reduce_bits(k, data_bits, self.n_bits)
        p = next(self.parameters())
        x = dequantize(k, self.n_bits, generator, dtype=p.dtype).to(p.device)
        self._check_images(x)
        return x

    @torch.no_grad()
    def bits_per_dim(self, images: np.ndarray | Tensor, batch_size: int = 256, seed: int = 0,
                     data_bits: int | None = None) -> BitsPerDim:
        """Bits/dim of uint8 NHWC ``images`` (mean over images) and per-level contributions that sum to it.

        Dequantisation noise is drawn from a generator seeded with ``seed``, so the figure is repeatable.
        """
        was_training = self.training
        self.eval()
        gen = torch.Generator().manual_seed(seed)
        totals = torch.zeros(len(self.levels), dtype=torch.float64)
        n = len(images)
        if n == 0:
            raise UserInputError("no images to evaluate")
        for start in range(0, n, batch_size):
            batch = images[start : start + batch_size]
            x = self.prepare(batch, gen, data_bits)
            lp = self.level_log_probs(x).double().cpu()
            totals += level_bits_per_dim(lp, self.level_dims, self.n_bits).sum(dim=0)
        self.train(was_training)
        levels = (totals / n).tolist()
        return BitsPerDim(bits_per_dim=float(math.fsum(levels)), levels=levels, images=n)

    # ----- persistence ---------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Write ``model.json`` and one ``level_XX/weights.safetensors`` per level."""
        from waveletflow.models.io import save_level_weights, write_json_atomic

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_json_atomic(directory / MODEL_FILE, {"model_type": self.model_type, "config": self.config})
        for i in range(len(self.levels)):
            save_level_weights(self, i, level_dir(directory, i) / WEIGHTS_FILE)

    def num_parameters(self, level: int | None = None) -> int:
        params = self.parameters() if level is None else self.levels[level].parameters()
        return sum(p.numel() for p in params)

    def describe(self) -> dict[str, Any]:
        """Sizes and parameter counts, for ``waveletflow info``."""
        return {
            "model_type": self.model_type,
            "image_shape": list(self.image_shape),
            "n_bits": self.n_bits,
            "parameters": self.num_parameters(),
            "levels": [
                {"level": i, "name": name, "dims": d, "parameters": self.num_parameters(i)}
                for i, (name, d) in enumerate(zip(self.level_names(), self.level_dims))
            ],
        }
