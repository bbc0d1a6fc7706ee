"""The Glow baseline (Kingma & Dhariwal 2018): one multi-scale flow over the whole image."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from waveletflow.flows import MultiScaleGlow, standard_normal_logp
from waveletflow.models.base import FlowModel

GLOW_DEFAULTS: dict[str, Any] = {
    "n_levels": 3,
    "n_steps": 8,
    "width": 64,
    "n_blocks": 1,
    "coupling": "affine",
    "lu": True,
}


def glow_config(image_shape: tuple[int, int, int], n_bits: int = 8, **overrides: Any) -> dict[str, Any]:
    """A Glow config: the defaults, with as many levels as the image size allows (at most 3)."""
    c, h, w = image_shape
    levels = 0
    while levels < 3 and h % 2 == 0 and w % 2 == 0 and min(h, w) >= 4:
        levels, h, w = levels + 1, h // 2, w // 2
    cfg = {**GLOW_DEFAULTS, "n_levels": max(levels, 1), "image_shape": list(image_shape), "n_bits": n_bits}
    cfg.update(overrides)
    return cfg


class Glow(FlowModel):
    """Glow: ``n_levels`` × [squeeze → ``n_steps`` steps → split], one trainable level.

    >>> import torch
    >>> m = Glow(glow_config((1, 8, 8), n_bits=5, n_levels=2, n_steps=2, width=8))
    >>> m.log_prob(torch.rand(2, 1, 8, 8)).shape
    torch.Size([2])
    """

    model_type = "glow"

    def __init__(self, config: dict[str, Any]):
        config = {**GLOW_DEFAULTS, **config}
        super().__init__(config)
        self.flow = MultiScaleGlow(
            self.image_shape,
            n_levels=config["n_levels"],
            n_steps=config["n_steps"],
            width=config["width"],
            n_blocks=config["n_blocks"],
            coupling=config["coupling"],
            lu=config["lu"],
        )
        self.levels = nn.ModuleList([self.flow])

    @property
    def level_dims(self) -> list[int]:
        return [self.num_dims]

    def level_names(self) -> list[str]:
        return ["glow"]

    def level_log_probs(self, x: Tensor) -> Tensor:
        z, logdet = self.flow(x)
        return (standard_normal_logp(z) + logdet)[:, None]

    def encode(self, x: Tensor) -> Tensor:
        self._check_images(x)
        return self.flow(x)[0]

    def decode(self, z: Tensor) -> Tensor:
        return self.flow.inverse(z)
