"""The composed multi-resolution model: a base flow and one conditional flow per wavelet level.

``log p(x) = log p(I_0) + Σ_l [log p(D_l | I_l) + log|det| of wavelet step l]`` (Yu et al. 2020, §3; Voleti et
al. 2021, §3). The log-det of each step is counted in the level whose details that step creates, so the
per-level terms sum exactly. Wavelet Flow and MRCNF are this model with other flows (see their factories); the
wavelet is Haar, as published, or a CDF wavelet by lifting (:mod:`waveletflow.wavelets.lifting`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from waveletflow.data import to_tensor
from waveletflow.errors import UserInputError
from waveletflow.layers import InvertibleLayer
from waveletflow.layers.base import format_shape, shapes_fit
from waveletflow.layers.solver import SolverConfig
from waveletflow.models.base import FlowModel, deprecated_annealed
from waveletflow.models.terms import LevelTerm, standard_level_term
from waveletflow.models.draws import finite_draws
from waveletflow.wavelets import (
    BOUNDARIES, check_wavelet, crop_margin, dwt2, haar_logdet_per_low, idwt2, logdet_per_low, pyramid_sizes,
)


class SuperResTask(NamedTuple):
    """What super-resolution draws: from ``low`` (N, C, h, w), the convention's low-pass of the input's bin centres
    ``target`` (their averages), the levels ``first`` to ``last``."""

    low: Tensor
    target: Tensor
    first: int
    last: int


class WaveletModel(FlowModel):
    """Level 0 models the base image; level l ≥ 1 the detail bands of one Haar step given its low-pass.

    Args:
        base_flow: an unconditional flow on the (C, h, w) base image.
        detail_flows: coarse to fine, flows on 3C detail channels conditioned on the C-channel low-pass.
        convention: the normalisation (``average``, ``orthonormal`` or ``unimodular``).
        image_shape: (C, H, W) of the full images.
        wavelet: ``haar`` (default), ``cdf53`` or ``cdf97`` (:data:`waveletflow.wavelets.WAVELETS`).
        boundary: ``symmetric`` (default) or ``periodic``: a lifted wavelet's boundary (crops need ``periodic``).
        crops: per level, the side of the random crop of full images that trains it (None: whole images; a
            crop must be divisible by 2 to the number of Haar steps down to its level, see the config checks).
        **kwargs: ``model_type``, ``n_bits``, ``config``, ``kinetic``, ``jacobian`` of :class:`FlowModel`.
    """

    def __init__(self, base_flow: InvertibleLayer, detail_flows: Sequence[InvertibleLayer], convention: str = "average",
                 *, image_shape: Sequence[int], crops: Sequence[int | None] | None = None, wavelet: str = "haar",
                 boundary: str = "symmetric", **kwargs: Any):
        super().__init__(kwargs.pop("model_type", "waveletflow"), image_shape, **kwargs)
        c, h, w = self.image_shape
        haar_logdet_per_low(convention)  # validates the name
        check_wavelet(wavelet)
        if boundary not in BOUNDARIES:
            raise UserInputError(f"unknown boundary {boundary!r}; choose one of {', '.join(BOUNDARIES)}")
        self.convention = convention
        self.wavelet = wavelet
        self.boundary = boundary
        n_detail = len(detail_flows)
        base_hw = (h >> n_detail, w >> n_detail)
        if base_hw[0] << n_detail != h or base_hw[1] << n_detail != w:
            raise UserInputError(f"{h}×{w} images cannot be halved {n_detail} times")
        self.sizes = pyramid_sizes((h, w), base_hw)  # coarse to fine, base first
        for level, flow in enumerate([base_flow, *detail_flows]):
            want = (c, 0) if level == 0 else (3 * c, c)
            if (flow.in_shape[0], flow.cond_channels) != want:
                raise UserInputError(f"level {level} needs a flow on {want[0]} channels conditioned on {want[1]}, "
                                     f"got {flow.in_shape[0]} conditioned on {flow.cond_channels}")
        if not shapes_fit(base_flow.in_shape, (c, *self.sizes[0])):
            raise UserInputError(f"the base flow takes {format_shape(base_flow.in_shape)}, but the base image of "
                                 f"{h}×{w} images halved {n_detail} times is {format_shape((c, *self.sizes[0]))}")
        self.levels = nn.ModuleList([base_flow, *detail_flows])
        self.crops = [None] * (n_detail + 1) if crops is None else [None if v is None else int(v) for v in crops]
        if wavelet != "haar" and boundary != "periodic" and any(v is not None for v in self.crops):
            raise UserInputError(f"crops with the {wavelet} wavelet need the periodic boundary")
        for level, crop in enumerate(self.crops):
            if crop is not None and crop + 2 * self.level_margin(level) >= min(h, w):
                raise UserInputError(f"level {level}: crop {crop} and its margin of {self.level_margin(level)} pixels "
                                     "on each side cover the image")

    # ----- structure ---------------------------------------------------------------------------
    @property
    def level_dims(self) -> list[int]:
        c = self.image_shape[0]
        bh, bw = self.sizes[0]
        return [c * bh * bw] + [3 * c * hh * ww for hh, ww in self.sizes[:-1]]

    def level_names(self) -> list[str]:
        bh, bw = self.sizes[0]
        return [f"base {bh}x{bw}"] + [f"details {hh}x{ww} -> {2 * hh}x{2 * ww}" for hh, ww in self.sizes[:-1]]

    def level_crop(self, level: int) -> int | None:
        return self.crops[level]

    def level_margin(self, level: int) -> int:
        """A cropped level's margin (:func:`~waveletflow.wavelets.crop_margin`): 0 for Haar; for a lifted wavelet,
        training takes windows of the periodic image this much larger on every side and cuts the coefficients of
        the crop out of them, exactly the whole image's."""
        if self.crops[level] is None:
            return 0
        return crop_margin(self.wavelet, len(self.levels) - level)

    def describe(self) -> dict[str, Any]:
        """:meth:`FlowModel.describe` with the wavelet, its normalisation and each detail level's context."""
        info = {**super().describe(), "wavelet": self.wavelet, "boundary": self.boundary, "convention": self.convention}
        entries = getattr(self.config, "levels", ())
        for row, entry in zip(info["levels"][1:], entries[1:]):
            if hasattr(entry, "context"):
                row["context"] = entry.context
        return info

    def level_hw(self, level: int) -> tuple[int, int]:
        """The base image's size for level 0, the size of the detail bands of level ``level`` ≥ 1."""
        return self.sizes[max(0, level - 1)]

    # ----- the decomposition, written once -----------------------------------------------------------
    def input_steps(self, levels: Sequence[int]) -> int:
        """Levels up to ℓ need only the low-pass that level ℓ refines: ``L − ℓ`` steps below the image (for Haar,
        whose low-pass is block means; a lifted wavelet's low-pass comes from the whole image: 0)."""
        if self.wavelet != "haar":
            return 0
        return len(self.levels) - 1 - max(levels)

    def _level_terms(self, x: Tensor, levels: Sequence[int], solver: SolverConfig | None,
                     steps: int = 0) -> dict[int, LevelTerm]:
        """Wavelet steps from ``x`` (``steps`` below full resolution) down to the coarsest level asked for, running
        each asked level's flow."""
        terms: dict[int, LevelTerm] = {}
        low = x
        margin = self.level_margin(levels[0]) if len(levels) == 1 else 0
        window = margin and x.shape[-1] == self.crops[levels[0]] + 2 * margin  # a cropped level's training window
        for level in range(len(self.levels) - 1 - steps, max(min(levels), 1) - 1, -1):  # fine to coarse
            low, detail, step_logdet = dwt2(low, self.wavelet, self.convention, self.boundary)
            if level in levels:
                if window:  # the crop's coefficients: the window's without its margin
                    cut = margin >> (len(self.levels) - level)
                    low, detail = low[..., cut:-cut, cut:-cut], detail[..., cut:-cut, cut:-cut]
                    step_logdet = torch.full_like(step_logdet, low[0].numel() * logdet_per_low(self.wavelet,
                                                                                              self.convention))
                terms[level] = standard_level_term(self.levels[level].transform(detail, low, solver), step_logdet)
        if 0 in levels:
            terms[0] = standard_level_term(self.levels[0].transform(low, None, solver))
        return terms

    # ----- latents ---------------------------------------------------------------------------------
    def _decode_from(self, low: Tensor, z: Tensor, first_level: int, solver: SolverConfig | None) -> Tensor:
        """Sample-free synthesis: invert the detail flows of levels ``first_level``… given their latents ``z``
        (as many levels as ``z`` holds latents for)."""
        dims, total = [], 0
        for d in self.level_dims[first_level:]:
            if total >= z.shape[1]:
                break
            dims.append(d)
            total += d
        chunks = torch.split(z, dims, dim=1)
        for level, zl in enumerate(chunks, start=first_level):
            hh, ww = low.shape[2], low.shape[3]
            zl = zl.reshape(z.shape[0], 3 * self.image_shape[0], hh, ww)
            detail = self.levels[level].inverse_transform(zl, low, solver, jac=False).z
            low = idwt2(low, detail, self.wavelet, self.convention, self.boundary)
        return low

    def _base_shape(self) -> list[int]:
        """The base flow's latent shape (C', h', w') for this model's base image."""
        return [s if s is not None else self.sizes[0][i - 1] for i, s in enumerate(self.levels[0].out_shape)]

    def decode(self, z: Tensor, solver: SolverConfig | None = None) -> Tensor:
        d0 = self.level_dims[0]
        z0 = z[:, :d0].reshape(z.shape[0], *self._base_shape())
        base = self.levels[0].inverse_transform(z0, None, solver, jac=False).z
        return self._decode_from(base, z[:, d0:], 1, solver)

    def invert_level(self, level: int, z: Tensor, low: Tensor | None) -> tuple[Tensor, Tensor]:
        n = z.shape[0]
        if level == 0:
            out = self.levels[0].inverse_transform(z.reshape(n, *self._base_shape()), None, None, jac=True)
            return out.z, out.logdet
        zl = z.reshape(n, 3 * self.image_shape[0], low.shape[2], low.shape[3])
        out = self.levels[level].inverse_transform(zl, low, None, jac=True)
        return idwt2(low, out.z, self.wavelet, self.convention, self.boundary), out.logdet

    @torch.no_grad()
    def super_resolve(self, low: np.ndarray | Tensor, temperature: float | Sequence[float] = 1.0,
                      generator: torch.Generator | None = None, solver: SolverConfig | None = None,
                      size: int | None = None, mcmc: Any = None, report: list[dict] | None = None,
                      progress: Any = None, redrawn: list[int] | None = None) -> np.ndarray:
        """Sample the missing detail levels for uint8 NHWC images ``low`` at one of the model's level sizes.

        Pixels are placed at bin centres ``(k + ½)/2^n_bits``; the output (uint8 NHWC, full size, or the level
        size whose height is ``size``) has the model's ``average`` low-pass equal to the input: for Haar, its block
        means, within one grey level (exactly so before quantisation); for a lifted wavelet, exactly so before
        the output is clamped into range and rounded (:meth:`downsample` makes such inputs). Large images are decoded a few at a time (:meth:`chunk_size`). An output
        that came out non-finite is drawn again, as :meth:`sample` does (``redrawn`` receives how many were).
        Annealed super-resolution is :func:`waveletflow.sampling.super_resolve` (``mcmc``, ``report`` and
        ``progress`` here are deprecated and passed on to it).
        """
        if mcmc is not None:
            return deprecated_annealed("super_resolve", self, low, temperature, generator=generator, size=size,
                                        mcmc=mcmc, report=report, progress=progress, redrawn=redrawn)
        task = self.superres_task(low, size)
        step = self.chunk_size()  # a few full-size images at a time
        dims = sum(self.level_dims[task.first : task.last + 1])

        def draw(rows: Tensor) -> Tensor:
            z = self.sample_latent(len(rows), temperature, generator, first_level=task.first)[:, :dims]
            return torch.cat([self._decode_from(task.low[rows[i : i + step]], z[i : i + step], task.first, solver)
                              for i in range(0, len(rows), step)])

        return self.superres_output(finite_draws(draw, len(task.low), redrawn), task)

    def superres_task(self, low: np.ndarray | Tensor, size: int | None = None) -> SuperResTask:
        """Check uint8 NHWC ``low`` and the output height ``size`` (None: full size) and say what to draw: the
        convention's low-pass of the input's bin centres and the levels from ``first`` to ``last``."""
        k = to_tensor(low)
        c = self.image_shape[0]
        out_size, size = size, (k.shape[2], k.shape[3])
        if len(self.sizes) < 2:
            raise UserInputError("this model has no detail levels (its base is the full image): nothing to super-resolve")
        if k.shape[1] != c or size not in self.sizes[:-1]:
            allowed = ", ".join(f"{a}x{b}" for a, b in self.sizes[:-1])
            raise UserInputError(
                f"super-resolution input must be {c}-channel images of one of the level sizes {allowed}; "
                f"got {k.shape[1]} channels at {size[0]}x{size[1]}"
            )
        if int(k.min()) < 0 or int(k.max()) >= 2**self.n_bits:
            raise UserInputError(f"input pixel values must lie in 0..{2**self.n_bits - 1}")
        first = self.sizes.index(size) + 1
        heights = [hh for hh, _ in self.sizes[first:]]
        if out_size is not None and out_size not in heights:
            raise UserInputError(f"super-resolution from {size[0]}x{size[1]} goes to one of the heights "
                                 f"{', '.join(map(str, heights))}; got {out_size}")
        last = len(self.sizes) - 1 if out_size is None else first + heights.index(out_size)
        p = next(self.parameters())
        target = ((k.to(p.dtype) + 0.5) / 2**self.n_bits).to(p.device)
        return SuperResTask(target * self.low_pass_scale(len(self.sizes) - first), target, first, last)

    def superres_output(self, high: Tensor, task: SuperResTask) -> np.ndarray:
        """Drawn images ``high`` of ``task`` → uint8 NHWC: for Haar, whose block means are the input's (clamped
        into range by alternating projections); for a lifted wavelet, clamped into range (its low-pass is the
        input's before the clamp and the rounding)."""
        step = self.chunk_size()
        if self.wavelet != "haar":
            return np.concatenate([self.to_uint8(high[i : i + step].clamp(0.0, 1.0 - 1e-6))
                                   for i in range(0, len(high), step)])
        return np.concatenate([self.to_uint8(match_block_means(high[i : i + step], task.target[i : i + step],
                                                               1.0 - 1e-6)) for i in range(0, len(high), step)])

    def downsample(self, images: np.ndarray, factor: int) -> np.ndarray:
        """uint8 NHWC images → their low-pass ``log2(factor)`` steps down as an image (the ``average``
        normalisation: block means for Haar), rounded to the nearest pixel value: the input that this model's
        super-resolution takes and keeps.

        >>> from waveletflow.models import build_model
        >>> m = build_model("waveletflow", {"image_shape": [1, 4, 4], "n_bits": 4}, device="cpu")
        >>> m.downsample(np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1), 2)[0, :, :, 0].tolist()  # block means
        [[3, 5], [11, 13]]
        """
        k = to_tensor(images).to(torch.float64)
        steps = int(factor).bit_length() - 1
        if factor < 2 or 1 << steps != factor:
            raise UserInputError(f"the factor must be a power of two of at least 2, got {factor}")
        if k.shape[2] % factor or k.shape[3] % factor:
            raise UserInputError(f"{k.shape[2]}x{k.shape[3]} images cannot be reduced by {factor}")
        for _ in range(steps):
            k = dwt2(k, self.wavelet, "average", self.boundary)[0]
        top = 2**self.n_bits - 1
        return torch.floor(k + 0.5).clamp(0, top).permute(0, 2, 3, 1).numpy().astype(np.uint8)

    def low_pass_scale(self, steps: int) -> float:
        """The low-pass after ``steps`` steps of an image of ones (1 for ``average``, for every wavelet)."""
        low = torch.ones(1, 1, 2**steps, 2**steps, dtype=torch.float64)
        for _ in range(steps):
            low = dwt2(low, self.wavelet, self.convention, self.boundary)[0]
        return float(low.reshape(-1)[0])


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
