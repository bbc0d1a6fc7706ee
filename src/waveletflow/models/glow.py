"""The Glow baseline (Kingma & Dhariwal 2018): one multi-scale flow over the whole image, one trainable level."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from waveletflow.flows import MultiScaleGlow
from waveletflow.layers.solver import SolverConfig
from waveletflow.models.base import FlowModel
from waveletflow.models.terms import LevelTerm, standard_level_term
from waveletflow.models.config import GlowConfig


class Glow(FlowModel):
    """Glow: ``n_scales`` × [squeeze → ``n_steps`` steps → split], as a model with one level (``model_type``
    ``glow``, or ``glow-residual`` for the variant with Wavelet Flow's coupling).

    >>> import torch
    >>> from waveletflow.models.config import glow_config
    >>> m = Glow(glow_config((1, 8, 8), n_bits=5, n_scales=2, n_steps=2, width=8))
    >>> m.log_prob(torch.rand(2, 1, 8, 8)).shape
    torch.Size([2])
    """

    def __init__(self, config: GlowConfig, model_type: str = "glow"):
        super().__init__(model_type, config.image_shape, config.n_bits, config)
        self.flow = MultiScaleGlow(self.image_shape, n_scales=config.n_scales, n_steps=config.n_steps,
                                   width=config.width, n_blocks=config.n_blocks, coupling=config.coupling, lu=config.lu,
                                   net=config.coupling_net, checkpoint=config.checkpoint)
        self.levels = nn.ModuleList([self.flow])

    @property
    def level_dims(self) -> list[int]:
        return [self.num_dims]

    def level_names(self) -> list[str]:
        return ["glow"]

    def _level_terms(self, x: Tensor, levels: Sequence[int], solver: SolverConfig | None,
                     steps: int = 0) -> dict[int, LevelTerm]:
        return {0: standard_level_term(self.flow.transform(x, None, solver))}

    def decode(self, z: Tensor, solver: SolverConfig | None = None) -> Tensor:
        return self.flow.inverse_transform(z, None, solver, jac=False).z

    def invert_level(self, level: int, z: Tensor, low: Tensor | None) -> tuple[Tensor, Tensor]:
        out = self.flow.inverse_transform(z, None, None, jac=True)
        return out.z, out.logdet
