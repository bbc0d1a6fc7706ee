"""The interface every model type shares, so that one trainer, one evaluator and one CLI serve them all.

A model is a list of independently trainable *levels* (``model.levels``). Their log-probabilities
(``level_log_probs``) add up to the log-density of the full image, and any set of levels can be trained through
``objective``. A model type provides one method, ``_level_terms``, that runs the flows of the levels asked for;
likelihoods, objectives, latents and bits/dim are all derived from it here.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from waveletflow.data import block_means, dequantize, dequantize_means, quantize, reduce_bits, to_tensor
from waveletflow.errors import UserInputError
from waveletflow.flows import data_dependent_init
from waveletflow.layers.cnf import CNF
from waveletflow.layers.precision import exact_float32
from waveletflow.layers.solver import SolverConfig
from waveletflow.metrics import level_bits_per_dim
from waveletflow.models.draws import finite_draws
from waveletflow.models.terms import BitsPerDim, LevelTerm, Objective

log = logging.getLogger("waveletflow")

#: images per batch when evaluating (``bits_per_dim``, ``waveletflow evaluate``)
EVAL_BATCH_SIZE = 256
#: at most this many pixels per evaluation batch (256 images of 64×64): large images are evaluated a few at a time
EVAL_BATCH_PIXELS = 256 * 64 * 64


class FlowModel(nn.Module):
    """Base class of every model type.

    Images come in two kinds, told apart by their type, and every method says which it takes and gives:

    - *pixels*: integer images ``(N, H, W, C)`` as a dataset stores them (uint8 numpy arrays, or integer tensors);
      :meth:`bits_per_dim` and :meth:`super_resolve` take them (a float array is refused with one line) and
      :meth:`super_resolve` and :meth:`to_uint8` give them;
    - *continuous images*: float tensors ``(N, C, H, W)`` in ``[0, 1)`` (dequantised pixels): :meth:`log_prob`,
      :meth:`encode` and :meth:`objective` take them, :meth:`sample` and :meth:`decode` give them, and
      :meth:`prepare` makes them from pixels.

    Args:
        model_type: the registry name (``waveletflow``, ``glow``, ``mrcnf``).
        image_shape: (C, H, W) of the images.
        n_bits: bit depth of the modelled pixels.
        config: the config the model was built from (saved with it; None for a hand-built model).
        kinetic: weight of the RNODE kinetic-energy penalty of continuous levels (Finlay et al. 2020).
        jacobian: weight of the RNODE Jacobian (Frobenius norm) penalty of continuous levels.

    A config's ``noise_std`` σ > 0 makes the model one of noisy images: :meth:`prepare` adds Gaussian noise of
    standard deviation σ to the dequantised images (training, validation and :meth:`bits_per_dim` alike, so its
    bits/dim are those of the noisy images), and :meth:`denoise` takes samples back by the model's own score.
    """

    levels: nn.ModuleList

    def __init__(self, model_type: str, image_shape: Sequence[int], n_bits: int = 8, config: Any = None,
                 kinetic: float = 0.0, jacobian: float = 0.0):
        super().__init__()
        c, h, w = (int(v) for v in image_shape)
        self.model_type = model_type
        self.config = config
        self.image_shape: tuple[int, int, int] = (c, h, w)
        self.n_bits = int(n_bits)
        self.num_dims = c * h * w
        self.penalty_weights = (float(kinetic), float(jacobian))
        #: standard deviation of the Gaussian noise on the images the model is of (0: the images themselves)
        self.noise_std = float(getattr(config, "noise_std", 0.0) or 0.0)

    # ----- what each model type provides ---------------------------------------------------------
    @property
    def level_dims(self) -> list[int]:
        """Dimensions modelled by each level; they sum to ``C·H·W``."""
        raise NotImplementedError

    def level_names(self) -> list[str]:
        """A short description of each level (for ``info``, ``evaluate`` and the curves)."""
        return [f"level {i}" for i in range(len(self.levels))]

    def level_crop(self, level: int) -> int | None:
        """Side of the random crop taken from full images to train ``level`` (None: whole images)."""
        return None

    def level_margin(self, level: int) -> int:
        """Pixels that a cropped level's training window adds on every side of its crop, cut away again before
        its flow (0: none; a lifted wavelet's coefficients reach beyond their block)."""
        return 0

    def level_hw(self, level: int) -> tuple[int, int]:
        """(height, width) of the images the flow of ``level`` transforms (of whole images): the image for a
        one-level model."""
        return self.image_shape[1], self.image_shape[2]

    def input_steps(self, levels: Sequence[int]) -> int:
        """How many Haar steps below full resolution the input of ``levels`` may be drawn (their terms only need
        the low-pass there; training draws it directly, see :meth:`prepare`). 0 unless a model type says more."""
        return 0

    def low_pass_scale(self, steps: int) -> float:
        """The low-pass, ``steps`` Haar steps down, of an image of ones (1 for block means)."""
        return 1.0

    def _level_terms(self, x: Tensor, levels: Sequence[int], solver: SolverConfig | None,
                     steps: int = 0) -> dict[int, LevelTerm]:
        """Run the flows of ``levels`` (sorted, distinct) on images ``x`` (possibly a crop for one level)."""
        raise NotImplementedError

    def decode(self, z: Tensor, solver: SolverConfig | None = None) -> Tensor:
        """Exact inverse of :meth:`encode`."""
        raise NotImplementedError

    def invert_level(self, level: int, z: Tensor, low: Tensor | None) -> tuple[Tensor, Tensor]:
        """Synthesis of one level from its flat latents ``z`` (N, D_l) given the image below it ``low`` (None for
        level 0): the image after this level and ``log|det ∂x_l/∂z_l|`` (N,) of the level's flow, differentiable
        in ``z`` (annealed sampling's target)."""
        raise NotImplementedError

    def super_resolve(self, low: np.ndarray | Tensor, temperature: float | Sequence[float] = 1.0,
                      generator: torch.Generator | None = None, solver: SolverConfig | None = None,
                      size: int | None = None, mcmc: Any = None, report: list[dict] | None = None,
                      progress: Any = None, redrawn: list[int] | None = None) -> np.ndarray:
        """Full-size (or ``size``-high) uint8 NHWC images whose low-pass is ``low`` (models with wavelet levels
        only; ``redrawn`` as in :meth:`sample`; annealed: :func:`waveletflow.sampling.super_resolve`)."""
        raise UserInputError(f"a {self.model_type} model has no wavelet levels and cannot super-resolve")

    # ----- derived from _level_terms -------------------------------------------------------------
    @property
    def continuous(self) -> bool:
        """Whether some level is a continuous flow (an ODE whose solver can be chosen)."""
        return any(isinstance(m, CNF) for m in self.modules())

    def _levels(self, levels: Sequence[int] | None) -> list[int]:
        return list(range(len(self.levels))) if levels is None else sorted(set(int(v) for v in levels))

    def level_log_probs(self, x: Tensor, levels: Sequence[int] | None = None,
                        solver: SolverConfig | None = None, steps: int = 0) -> Tensor:
        """(N, L) nats of ``levels`` (all by default) for images ``x`` (N, C, H, W) in [0, 1); over all levels
        the sum is ``log p(x)``. ``x`` may be the low-pass ``steps`` Haar steps down (:meth:`input_steps`)."""
        levels = self._levels(levels)
        self._check_batch(x, levels, steps)
        terms = self._level_terms(x, levels, solver, steps)
        return torch.stack([terms[v].log_prob for v in levels], dim=1)

    def log_prob(self, x: Tensor, solver: SolverConfig | None = None) -> Tensor:
        """(N,) log-density in nats of ``x`` (N, C, H, W) in [0, 1) (a density over [0,1)^D)."""
        self._check_images(x)
        return self.level_log_probs(x, solver=solver).sum(dim=1)

    def objective(self, levels: Sequence[int], x: Tensor, solver: SolverConfig | None = None,
                  steps: int = 0) -> Objective:
        """What the trainer minimises for ``levels`` trained together: their summed NLL (N,) nats, the penalties
        of their continuous flows, and the function evaluations this took. ``x`` may be the low-pass ``steps``
        Haar steps down (:meth:`prepare` with ``steps=input_steps(levels)``)."""
        levels = self._levels(levels)
        self._check_batch(x, levels, steps)
        terms = self._level_terms(x, levels, solver, steps).values()
        nll = -sum(t.log_prob for t in terms)
        reg = x.new_zeros(())
        for t in terms:
            for weight, value in zip(self.penalty_weights, (t.out.kinetic, t.out.jacobian)):
                if value is not None and weight:
                    reg = reg + weight * value.mean()
        return Objective(nll, reg, sum(t.out.nfe for t in terms) if self.continuous else None)

    def initialize(self, levels: Sequence[int], x: Tensor, steps: int = 0) -> None:
        """Data-dependent initialisation of every ActNorm of ``levels`` from images ``x`` (whole images, or crops
        of one cropped level; ``steps`` Haar steps down as in :meth:`objective`), layer by layer in one pass."""
        levels = self._levels(levels)
        flows = nn.ModuleList([self.levels[v] for v in levels])
        data_dependent_init(flows, x, run=lambda: self.level_log_probs(x, levels, steps=steps))

    def encode(self, x: Tensor, solver: SolverConfig | None = None) -> Tensor:
        """(N, D) flat latent, standard normal under the model."""
        self._check_images(x)
        terms = self._level_terms(x, self._levels(None), solver)
        return torch.cat([terms[v].out.z.reshape(x.shape[0], -1) for v in sorted(terms)], dim=1)

    def _check_batch(self, x: Tensor, levels: list[int], steps: int = 0) -> None:
        """Whole images, or for one cropped level, crops of the size it trains on; ``steps`` Haar steps down."""
        crop = self.level_crop(levels[0]) if len(levels) == 1 else None
        c, h, w = self.image_shape
        if crop is not None:
            crop += 2 * self.level_margin(levels[0])
        want = [(c, h >> steps, w >> steps)] + ([] if crop is None else [(c, crop >> steps, crop >> steps)])
        if steps > self.input_steps(levels):
            raise UserInputError(f"levels {levels} need their input at most {self.input_steps(levels)} Haar steps "
                                 f"down, got {steps}")
        if x.dim() == 4 and tuple(x.shape[1:]) in want:
            return
        if steps:
            raise UserInputError(f"this model takes the low-pass {steps} steps down as {want[0]} (C, H, W), "
                                 f"got {tuple(x.shape)}")
        self._check_images(x)

    def _check_images(self, x: Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise UserInputError(f"this model takes images of shape {self.image_shape} (C, H, W), got {tuple(x.shape)}")

    # ----- sampling ------------------------------------------------------------------------------
    def temperatures(self, temperature: float | Sequence[float]) -> list[float]:
        n = len(self.levels)
        if isinstance(temperature, (int, float)):
            return [float(temperature)] * n
        temps = [float(t) for t in temperature]
        if len(temps) != n:
            raise UserInputError(f"give one temperature or one per level ({n}), got {len(temps)}")
        return temps

    def sample_latent(self, n: int, temperature: float | Sequence[float] = 1.0,
                      generator: torch.Generator | None = None, first_level: int = 0) -> Tensor:
        """Latents ``z ~ N(0, T_l²)`` of levels ``first_level`` and finer, level l's part scaled by its temperature."""
        p = next(self.parameters())
        temps = self.temperatures(temperature)
        parts = [temps[v] * torch.randn(n, self.level_dims[v], generator=generator, dtype=p.dtype).to(p.device)
                 for v in range(first_level, len(self.levels))]
        return torch.cat(parts, dim=1)

    @torch.no_grad()
    def sample(self, n: int, temperature: float | Sequence[float] = 1.0,
               generator: torch.Generator | None = None, solver: SolverConfig | None = None,
               mcmc: Any = None, report: list[dict] | None = None, progress: Any = None,
               redrawn: list[int] | None = None, denoise: bool = False) -> Tensor:
        """``n`` images (N, C, H, W) in [0, 1) from latents ``N(0, T²)`` at the given temperature (one, or one per
        level; Glow's temperature), decoded a few at a time for large images (:meth:`chunk_size`). Annealed
        sampling by MCMC is :func:`waveletflow.sampling.sample` (``mcmc``, ``report`` and ``progress`` here are
        deprecated and passed on to it).

        Never returns a non-finite image: an image whose decoding overflowed (an inverse far from the data) is
        drawn again from new latents, up to :data:`~waveletflow.models.draws.MAX_REDRAWS` rounds, with a warning;
        ``redrawn`` (a list) receives how many were; :class:`~waveletflow.models.draws.NonFiniteSamples` is raised
        if some stay non-finite. ``denoise``: each image goes through :meth:`denoise` before it is clamped."""
        if mcmc is not None:  # deprecated: annealed sampling is waveletflow.sampling's
            return deprecated_annealed("sample", self, n, temperature, generator=generator, mcmc=mcmc,
                                        report=report, progress=progress, redrawn=redrawn, denoise=denoise)
        if denoise:
            self.check_denoise()
        step = self.chunk_size()

        def draw(rows: Tensor) -> Tensor:
            z = self.sample_latent(len(rows), temperature, generator)
            x = torch.cat([self.decode(z[i : i + step], solver) for i in range(0, len(rows), step)])
            return self.denoise(x, solver) if denoise else x

        return finite_draws(draw, n, redrawn).clamp(0.0, 1.0 - 1e-6)

    def check_denoise(self) -> None:
        """Refuse (one line) to denoise with a model trained without noise."""
        if not self.noise_std:
            raise UserInputError("denoising needs a model of noisy images (trained with --noise-std above 0); this "
                                 "one was trained without noise")

    def denoise(self, x: Tensor, solver: SolverConfig | None = None) -> Tensor:
        """One step of Tweedie's formula with the model's exact score: ``x + σ²·∇ₓ log p(x)``, σ the model's
        :attr:`noise_std`, the posterior mean of the clean image behind the noisy image ``x`` (N, C, H, W) when
        ``p`` is the density of noisy images (Efron 2011). A few images at a time (an eighth of
        :meth:`chunk_size`: the backward pass keeps every activation).

        >>> import torch, waveletflow
        >>> m = waveletflow.build_model("glow", dict(image_shape=[1, 4, 4], n_bits=5, n_scales=1, noise_std=0.1))
        >>> m.denoise(torch.rand(2, 1, 4, 4)).shape
        torch.Size([2, 1, 4, 4])
        """
        self.check_denoise()
        var, step, outs = self.noise_std**2, max(1, self.chunk_size() // 8), []
        with torch.enable_grad():
            for i in range(0, len(x), step):
                xi = x[i : i + step].detach().requires_grad_(True)
                (score,) = torch.autograd.grad(self.log_prob(xi, solver).sum(), xi)
                outs.append((xi + var * score).detach())
        return torch.cat(outs)

    def chunk_size(self) -> int:
        """How many full-size images one batch of evaluation, sampling or super-resolution takes
        (:data:`EVAL_BATCH_PIXELS` pixels, at least one image)."""
        return max(1, EVAL_BATCH_PIXELS // (self.image_shape[1] * self.image_shape[2]))

    # ----- data and evaluation -------------------------------------------------------------------
    def to_uint8(self, x: Tensor) -> np.ndarray:
        """Images in [0, 1) → uint8 NHWC pixel values at the model's bit depth."""
        return quantize(x, self.n_bits).permute(0, 2, 3, 1).cpu().numpy().astype(np.uint8)

    def prepare(self, images: np.ndarray | Tensor, generator: torch.Generator | None = None,
                data_bits: int | None = None, steps: int = 0) -> Tensor:
        """uint8 NHWC images → dequantised (N, C, H, W) float tensor on the model's device; with ``steps``, its
        low-pass that many Haar steps down (from the block means of the pixels: :meth:`block_means`,
        :meth:`prepare_means`), which is all that levels of :meth:`input_steps` ≥ ``steps`` need."""
        if steps:
            return self.prepare_means(self.block_means(images, steps, data_bits), steps, generator)
        k = to_tensor(images)
        if data_bits is not None and data_bits != self.n_bits:
            k = reduce_bits(k, data_bits, self.n_bits)
        p = next(self.parameters())
        return self._noisy(dequantize(k, self.n_bits, generator, dtype=p.dtype), generator).to(p.device)

    def _noisy(self, x: Tensor, generator: torch.Generator | None, scale: float = 1.0) -> Tensor:
        """``x`` plus the model's Gaussian noise (standard deviation ``noise_std · scale``), drawn after everything
        else from ``generator``; ``x`` itself when the model has none (the random stream is then untouched)."""
        if not self.noise_std:
            return x
        return x + (self.noise_std * scale) * torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)

    def block_means(self, images: np.ndarray | Tensor, steps: int, data_bits: int | None = None) -> Tensor:
        """uint8 NHWC images → the mean pixel value (at the model's bit depth) of every 2^steps × 2^steps block,
        (N, C, H/2^steps, W/2^steps) float64 on the CPU: what :meth:`prepare_means` dequantises."""
        k = to_tensor(images)
        if data_bits is not None and data_bits != self.n_bits:
            k = reduce_bits(k, data_bits, self.n_bits)
        return block_means(k, steps)

    def prepare_means(self, means: Tensor, steps: int, generator: torch.Generator | None = None) -> Tensor:
        """Block means (:meth:`block_means`) → the low-pass ``steps`` Haar steps down of the dequantised images,
        on the model's device (the block mean of the dequantisation noise drawn as :func:`dequantize_means`
        says, and of the model's Gaussian noise exactly: standard deviation ``noise_std / 2^steps``)."""
        p = next(self.parameters())
        x = dequantize_means(means, self.n_bits, 4**steps, generator, dtype=torch.float64)
        x = self._noisy(x, generator, 2.0**-steps)  # the block mean of 4^steps independent noises
        return (x * self.low_pass_scale(steps)).to(device=p.device, dtype=p.dtype)

    @torch.no_grad()
    def bits_per_dim(self, images: np.ndarray | Tensor, levels: Sequence[int] | None = None,
                     batch_size: int = EVAL_BATCH_SIZE, seed: int = 0, data_bits: int | None = None,
                     solver: SolverConfig | None = None) -> BitsPerDim:
        """Bits/dim of uint8 NHWC ``images`` (mean over images), in total and per level (all levels by default).

        The one implementation behind ``waveletflow evaluate``, the trainer's validation and the benchmarks.
        Dequantisation noise (and a noisy model's Gaussian noise, :attr:`noise_std`: the figure is then that of the
        noisy images) is drawn from a generator seeded with ``seed``, so the figure is repeatable; images
        go through in batches of at most ``batch_size`` images and :data:`EVAL_BATCH_PIXELS` pixels, and the
        figure does not depend on the batching (beyond float rounding; an adaptive ODE solver's steps do).
        """
        n = len(images)
        if n == 0:
            raise UserInputError("no images to evaluate")
        if batch_size < 1:
            raise UserInputError(f"the batch size must be at least 1, got {batch_size}")
        levels = self._levels(levels)
        dims = [self.level_dims[v] for v in levels]
        batch_size = min(batch_size, self.chunk_size())
        was_training = self.training
        self.eval()
        gen = torch.Generator().manual_seed(seed)
        totals = torch.zeros(len(levels), dtype=torch.float64)
        nfe = None
        with exact_float32():
            try:
                for start in range(0, n, batch_size):
                    x = self.prepare(images[start : start + batch_size], gen, data_bits)
                    self._check_images(x)
                    terms = self._level_terms(x, levels, solver)
                    lp = torch.stack([terms[v].log_prob for v in levels], dim=1).double().cpu()
                    totals += level_bits_per_dim(lp, dims, self.n_bits).sum(dim=0) * (sum(dims) / self.num_dims)
                    nfe = [terms[v].out.nfe for v in levels] if self.continuous else None
            finally:
                self.train(was_training)
        contrib = (totals / n).tolist()
        own = [b * self.num_dims / d for b, d in zip(contrib, dims)]
        return BitsPerDim(float(math.fsum(contrib)), contrib, own, levels, n, nfe)

    # ----- description -----------------------------------------------------------------------------
    def num_parameters(self, level: int | None = None) -> int:
        """Parameters of one level, or of the whole model."""
        params = self.parameters() if level is None else self.levels[level].parameters()
        return sum(p.numel() for p in params)

    def describe(self) -> dict[str, Any]:
        """Sizes and parameter counts, for ``waveletflow info``."""
        return {
            "model_type": self.model_type,
            "image_shape": list(self.image_shape),
            "n_bits": self.n_bits,
            "noise_std": self.noise_std,
            "parameters": self.num_parameters(),
            "levels": [
                {"level": i, "name": name, "dims": d, "parameters": self.num_parameters(i), "crop": self.level_crop(i)}
                for i, (name, d) in enumerate(zip(self.level_names(), self.level_dims))
            ],
        }


#: annealed sampling, ``{"sample": ..., "super_resolve": ...}``: filled by :mod:`waveletflow.sampling` (a layer
#: above the models) when it is imported, for the deprecated ``mcmc`` argument of the models' methods
ANNEALED: dict[str, Callable[..., Any]] = {}


def deprecated_annealed(name: str, *args: Any, **kwargs: Any) -> Any:
    """The deprecated ``mcmc`` path of a model's ``sample`` / ``super_resolve``: a warning, then
    :mod:`waveletflow.sampling`'s function."""
    warnings.warn(f"model.{name}(..., mcmc=...) is deprecated: use waveletflow.sampling.{name}(model, ..., mcmc=...)",
                  DeprecationWarning, stacklevel=3)
    return ANNEALED[name](*args, **kwargs)
