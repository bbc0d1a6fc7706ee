"""Wavelet Flow (Yu et al. 2020): a base flow and one conditional flow per Haar level (SPEC §1, §3)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from waveletflow.data import to_tensor
from waveletflow.errors import UserInputError
from waveletflow.flows import MultiScaleGlow, flow_stack, standard_normal_logp
from waveletflow.models.base import FlowModel
from waveletflow.wavelets import haar, haar_logdet_per_low, inverse_haar, pyramid_sizes

_LEVEL_DEFAULTS = {"n_steps": 8, "width": 64, "n_blocks": 1, "coupling": "affine", "crop": None}

#: Presets in the spirit of the released configs (SPEC §3), scaled down for CPUs.
#: Each gives the base size, the base flow, and one entry per detail level, coarse to fine.
PRESETS: dict[str, dict[str, Any]] = {
    "8x8": {
        "base_size": 1,
        "base": {"n_steps": 4, "width": 32, "n_blocks": 1, "n_levels": 1},
        "levels": [{"n_steps": 4, "width": 32}, {"n_steps": 6, "width": 48}, {"n_steps": 8, "width": 64}],
    },
    "28x28": {
        "base_size": 7,
        "base": {"n_steps": 8, "width": 64, "n_blocks": 1, "n_levels": 1},
        "levels": [{"n_steps": 8, "width": 64}, {"n_steps": 8, "width": 64}],
    },
    "32x32": {
        "base_size": 1,
        "base": {"n_steps": 4, "width": 32, "n_blocks": 1, "n_levels": 1},
        "levels": [
            {"n_steps": 4, "width": 32},
            {"n_steps": 4, "width": 48},
            {"n_steps": 6, "width": 64},
            {"n_steps": 8, "width": 64},
            {"n_steps": 8, "width": 96},
        ],
    },
}
# 64×64: one more level than 32×32, trained on 32×32 patches (patch-wise training, SPEC §3)
PRESETS["64x64"] = {
    **copy.deepcopy(PRESETS["32x32"]),
    "levels": copy.deepcopy(PRESETS["32x32"]["levels"]) + [{"n_steps": 8, "width": 96, "crop": 32}],
}


def waveletflow_config(
    image_shape: Sequence[int], n_bits: int = 8, preset: str | None = None, **overrides: Any
) -> dict[str, Any]:
    """A Wavelet Flow config for images of ``image_shape`` (C, H, W): a named preset, or the one for
    the image size, or a generic one (base 1×1 where the size is a power of two, else the largest odd base)."""
    c, h, w = (int(v) for v in image_shape)
    name = preset or f"{h}x{w}"
    if name in PRESETS:
        cfg = copy.deepcopy(PRESETS[name])
    elif preset is not None:
        raise UserInputError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    else:
        base = h
        while base % 2 == 0 and base > 1 and w * base % h == 0:
            base //= 2
        n_detail = len(pyramid_sizes((h, w), (base, w * base // h))) - 1
        cfg = {
            "base_size": base,
            "base": {"n_steps": 8, "width": 64, "n_blocks": 1, "n_levels": 1},
            "levels": [{"n_steps": 8, "width": 64} for _ in range(n_detail)],
        }
    cfg.update({"image_shape": [c, h, w], "n_bits": int(n_bits), "convention": "average", "lu": True})
    cfg.update(overrides)
    return cfg


class WaveletFlow(FlowModel):
    """Level 0 models the base image; level l ≥ 1 models the detail bands of one Haar step given its low-pass.

    ``log p(x) = log p(I_0) + Σ_l [log p(D_l | I_l) + Haar log-det of step l]``; the Haar log-det of each
    step is counted in the level whose details that step creates, so per-level terms sum exactly.

    >>> m = WaveletFlow(waveletflow_config((1, 8, 8), n_bits=5))
    >>> m.level_dims
    [1, 3, 12, 48]
    """

    model_type = "waveletflow"

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        c, h, w = self.image_shape
        self.convention: str = config.get("convention", "average")
        haar_logdet_per_low(self.convention)  # validates the name
        bs = config["base_size"]
        base_hw = (bs, bs) if isinstance(bs, int) else tuple(bs)
        self.sizes = pyramid_sizes((h, w), base_hw)  # coarse to fine, base first
        n_detail = len(self.sizes) - 1
        level_cfgs = [{**_LEVEL_DEFAULTS, **lc} for lc in config["levels"]]
        if len(level_cfgs) != n_detail:
            raise UserInputError(
                f"{h}×{w} images with a {base_hw[0]}×{base_hw[1]} base have {n_detail} detail levels, "
                f"but the config lists {len(level_cfgs)}"
            )
        self.level_cfgs = level_cfgs
        flows: list[nn.Module] = [self._build_base((c, *base_hw), dict(config.get("base", {})))]
        for j, lc in enumerate(level_cfgs):
            flows.append(self._build_level(c, lc))
            if lc["crop"] is not None:
                crop = int(lc["crop"])
                steps = n_detail - j  # Haar steps from the full image down to this level's details
                if crop > h or crop > w or crop % (2**steps):
                    raise UserInputError(
                        f"level {j + 1}: crop {crop} must be at most the image size and divisible by {2**steps}"
                    )
        self.levels = nn.ModuleList(flows)

    def _build_base(self, base_shape: tuple[int, int, int], cfg: dict[str, Any]) -> nn.Module:
        """The unconditional flow of level 0: a Glow, with squeezes where the base allows them."""
        b = {**_LEVEL_DEFAULTS, "n_levels": 1, **cfg}
        _, bh, bw = base_shape
        squeeze = b.get("squeeze", min(bh, bw) > 1 and bh % 2 == 0 and bw % 2 == 0)
        return MultiScaleGlow(base_shape, n_levels=b["n_levels"], n_steps=b["n_steps"], width=b["width"],
                              n_blocks=b["n_blocks"], coupling=b["coupling"], lu=self.config.get("lu", True),
                              squeeze=squeeze)

    def _build_level(self, channels: int, cfg: dict[str, Any]) -> nn.Module:
        """The conditional flow of a detail level: K Glow steps on 3C channels given the C-channel low-pass."""
        return flow_stack(3 * channels, cfg["n_steps"], channels, cfg["width"], cfg["n_blocks"], cfg["coupling"],
                          self.config.get("lu", True))

    # ----- structure ---------------------------------------------------------------------------
    @property
    def level_dims(self) -> list[int]:
        c = self.image_shape[0]
        bh, bw = self.sizes[0]
        return [c * bh * bw] + [3 * c * hh * ww for hh, ww in self.sizes[:-1]]

    def level_names(self) -> list[str]:
        bh, bw = self.sizes[0]
        names = [f"base {bh}x{bw}"]
        names += [f"details {hh}x{ww} -> {2 * hh}x{2 * ww}" for hh, ww in self.sizes[:-1]]
        return names

    def level_crop(self, level: int) -> int | None:
        return None if level == 0 else self.level_cfgs[level - 1]["crop"]

    def _decompose(self, x: Tensor, steps: int) -> list[tuple[Tensor, Tensor, Tensor]]:
        """``steps`` Haar steps from ``x``; returns (low, detail, logdet) fine to coarse."""
        out = []
        low = x
        for _ in range(steps):
            low, detail, ld = haar(low, self.convention)
            out.append((low, detail, ld))
        return out

    def _detail_log_prob(self, level: int, low: Tensor, detail: Tensor, haar_logdet: Tensor) -> Tensor:
        z, logdet = self.levels[level](detail, low)
        return standard_normal_logp(z) + logdet + haar_logdet

    def _base_log_prob(self, base: Tensor) -> Tensor:
        z, logdet = self.levels[0](base)
        return standard_normal_logp(z) + logdet

    # ----- likelihood ----------------------------------------------------------------------------
    def level_log_probs(self, x: Tensor) -> Tensor:
        steps = self._decompose(x, len(self.sizes) - 1)[::-1]  # coarse to fine
        base = steps[0][0] if steps else x
        out = [self._base_log_prob(base)]
        for j, (low, detail, ld) in enumerate(steps):
            out.append(self._detail_log_prob(j + 1, low, detail, ld))
        return torch.stack(out, dim=1)

    def level_loss(self, level: int, x: Tensor) -> Tensor:
        n_detail = len(self.sizes) - 1
        if level == 0:
            steps = self._decompose(x, n_detail)
            return -self._base_log_prob(steps[-1][0] if steps else x)
        low, detail, ld = self._decompose(x, n_detail - level + 1)[-1]
        return -self._detail_log_prob(level, low, detail, ld)

    # ----- latents ---------------------------------------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        self._check_images(x)
        steps = self._decompose(x, len(self.sizes) - 1)[::-1]
        base = steps[0][0] if steps else x
        parts = [self.levels[0](base)[0].reshape(x.shape[0], -1)]
        for j, (low, detail, _) in enumerate(steps):
            parts.append(self.levels[j + 1](detail, low)[0].reshape(x.shape[0], -1))
        return torch.cat(parts, dim=1)

    def _decode_from(self, low: Tensor, zs: Sequence[Tensor], first_level: int) -> Tensor:
        c = self.image_shape[0]
        for j, z in enumerate(zs):
            level = first_level + j
            hh, ww = low.shape[2], low.shape[3]
            detail = self.levels[level].inverse(z.reshape(z.shape[0], 3 * c, hh, ww), low)
            low = inverse_haar(low, detail, self.convention)
        return low

    def decode(self, z: Tensor) -> Tensor:
        chunks = torch.split(z, self.level_dims, dim=1)
        z0 = chunks[0]
        if not isinstance(self.levels[0], MultiScaleGlow):  # a flow on the base image itself (MRCNF)
            z0 = z0.reshape(z.shape[0], self.image_shape[0], *self.sizes[0])
        base = self.levels[0].inverse(z0)
        return self._decode_from(base, chunks[1:], 1)

    def super_resolve(self, low: np.ndarray | Tensor, temperature: float | Sequence[float] = 1.0,
                      generator: torch.Generator | None = None) -> np.ndarray:
        """Sample the missing detail levels for uint8 NHWC images ``low`` at one of the model's level sizes.

        Pixels are placed at bin centres ``(k + ½)/2^n_bits``; the output (uint8 NHWC, full size) has a
        Haar ``average`` low-pass equal to the input within one grey level (exactly so before quantisation).
        """
        k = to_tensor(low)
        c, h, w = self.image_shape
        size = (k.shape[2], k.shape[3])
        if k.shape[1] != c or size not in self.sizes[:-1]:
            allowed = ", ".join(f"{a}x{b}" for a, b in self.sizes[:-1])
            raise UserInputError(
                f"super-resolution input must be {c}-channel images of one of the level sizes {allowed}; "
                f"got {k.shape[1]} channels at {size[0]}x{size[1]}"
            )
        if int(k.min()) < 0 or int(k.max()) >= 2**self.n_bits:
            raise UserInputError(f"input pixel values must lie in 0..{2**self.n_bits - 1}")
        first = self.sizes.index(size) + 1
        p = next(self.parameters())
        x = ((k.to(p.dtype) + 0.5) / 2**self.n_bits).to(p.device)
        if self.convention != "average":  # the low-pass of other conventions is a scaled average
            x = self._scale_low(x, len(self.sizes) - first)
        temps = self._temperatures(temperature)[first:]
        dims = self.level_dims[first:]
        with torch.no_grad():
            zs = [t * torch.randn(k.shape[0], d, generator=generator, dtype=p.dtype).to(p.device)
                  for t, d in zip(temps, dims)]
            out = self._decode_from(x, zs, first)
            target = x if self.convention == "average" else ((k.to(p.dtype) + 0.5) / 2**self.n_bits).to(p.device)
            out = match_block_means(out, target, 1.0 - 1e-6)
        return self.to_uint8(out)

    def _scale_low(self, avg: Tensor, steps: int) -> Tensor:
        """The ``convention``'s low-pass after ``steps`` steps of an image whose block averages are ``avg``."""
        ones = torch.ones(1, 1, 2**steps, 2**steps, dtype=avg.dtype)
        low = ones
        for _ in range(steps):
            low = haar(low, self.convention)[0]
        return avg * float(low.reshape(-1)[0])


def match_block_means(x: Tensor, means: Tensor, hi: float, iters: int = 50) -> Tensor:
    """Clamp ``x`` into ``[0, hi]`` while keeping its block means equal to ``means``.

    Sampled details can push pixels out of range; plain clamping would then change the low-pass image
    that super-resolution must keep. Alternating projections (add back the block residual, clamp) restore
    it for any ``means`` inside the range.
    """
    f = x.shape[-1] // means.shape[-1]
    pool = torch.nn.functional.avg_pool2d
    x = x.clamp(0.0, hi)
    for _ in range(iters):
        resid = means - pool(x, f)
        if float(resid.abs().max()) < 1e-7:
            break
        x = (x + resid.repeat_interleave(f, dim=2).repeat_interleave(f, dim=3)).clamp(0.0, hi)
    return x
