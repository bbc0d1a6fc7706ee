"""The models a benchmark compares, behind one small interface.

``Ours`` trains this project's models through the library's own trainer (resuming the run folder chunk by
chunk, exactly as a user would); ``NormflowsGlow`` is the peer library's multi-scale Glow built to its
documented recipe (``GlowBlock`` × K → ``Squeeze`` per scale, ``Merge`` between scales, a ``DiagGaussian``
per scale) and trained with the same optimiser, batch size, warm-up and clipping.
"""

from __future__ import annotations

import copy
import math
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.paths import level_steps
from waveletflow import load
from waveletflow.config import Config
from waveletflow.data import ImageDataset, dequantize, to_tensor
from waveletflow.errors import Diverged
from waveletflow.metrics import bits_per_dim
from waveletflow.models import build_model, default_config, glow_config, waveletflow_config
from waveletflow.models.config import GlowConfig, WaveletFlowConfig
from waveletflow.rundir import RunDir
from waveletflow.training import TrainOptions, train
from waveletflow.training.loop import MAX_NONFINITE_LOSSES


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class Ours:
    """A waveletflow model type trained by ``waveletflow.training.train`` in a run folder."""

    def __init__(self, name: str, model_type: str, config: Config, run_dir: Path, data: ImageDataset,
                 data_spec: str, device: str, batch_size: int, parallel: int = 1, seed: int = 0,
                 options: dict | None = None):
        self.name, self.model_type, self.config, self.data_spec = name, model_type, config, data_spec
        self.run_dir, self.data, self.device = run_dir, data, device
        self.batch_size, self.parallel, self.seed = batch_size, parallel, seed
        self.options = dict(options or {})  # training options that differ from the defaults
        self.trained_s = 0.0

    def params(self) -> int:
        return count_params(build_model(self.model_type, self.config))

    @property
    def lr(self) -> float:
        """The learning rate it trains with (the library's default unless its options set one)."""
        return float(self.options.get("lr", TrainOptions.lr))

    @property
    def steps(self) -> dict[str, int]:
        """The optimiser steps each level made so far, by level folder (``level_00`` ...)."""
        return level_steps(self.run_dir)

    def fresh(self, run_dir: Path | None = None, lr: float | None = None) -> Ours:
        """The same contender, untrained, in the run folder ``run_dir`` (default its own; replaced if it exists),
        with learning rate ``lr`` if given."""
        run_dir = run_dir or self.run_dir
        shutil.rmtree(run_dir, ignore_errors=True)
        other = copy.copy(self)
        other.run_dir, other.trained_s = run_dir, 0.0
        other.options = {**self.options, **({} if lr is None else {"lr": lr})}
        return other

    def train_for(self, seconds: float) -> None:
        opts = TrainOptions(**{"time_budget": seconds, "batch_size": self.batch_size, "device": self.device,
                               "seed": self.seed, "progress": False, "eval_every": 10**9, "checkpoint_every": 10**9,
                               "checkpoint_seconds": 10**9, **self.options})
        t0 = time.perf_counter()
        overrides = None if RunDir(self.run_dir).is_model() else self.config.to_dict()  # resumed chunks keep theirs
        train(self.run_dir, self.data_spec, self.model_type, "all", self.parallel, opts, overrides, data=self.data)
        self.trained_s += time.perf_counter() - t0

    def test_bpd(self, images: np.ndarray) -> float:
        model = load(self.run_dir, self.device)
        return model.bits_per_dim(images, data_bits=self.data.n_bits).bits_per_dim

    def sample_seconds(self, n: int, repeats: int) -> float:
        """Median seconds to draw ``n`` samples from the trained model (after one warm-up draw): latents at
        temperature 1 decoded as ``sample`` decodes them, without its redraws of images that came out non-finite
        (a briefly trained model may overflow: this is a speed, as normflows' ``sample`` is timed)."""
        model = load(self.run_dir, self.device)
        step = model.chunk_size()

        @torch.no_grad()
        def draw() -> None:
            z = model.sample_latent(n)
            for i in range(0, n, step):
                model.decode(z[i : i + step])

        return median_seconds(draw, repeats, self.device)


def median_seconds(fn, repeats: int, device: str) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` calls after one warm-up call."""
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def normflows_glow(image_shape: tuple[int, int, int], n_scales: int, n_steps: int, hidden: int):
    """normflows' multi-scale Glow, following its Glow example (unconditional base distributions)."""
    import normflows as nf

    c, h, w = image_shape
    q0, merges, flows = [], [], []
    for i in range(n_scales):
        flows.append([nf.flows.GlowBlock(c * 2 ** (n_scales + 1 - i), hidden, split_mode="channel", scale=True)
                      for _ in range(n_steps)] + [nf.flows.Squeeze()])
        if i > 0:
            merges.append(nf.flows.Merge())
            latent = (c * 2 ** (n_scales - i), h // 2 ** (n_scales - i), w // 2 ** (n_scales - i))
        else:
            latent = (c * 2 ** (n_scales + 1), h // 2**n_scales, w // 2**n_scales)
        q0.append(nf.distributions.DiagGaussian(latent))
    return nf.MultiscaleFlow(q0, flows, merges, class_cond=False)


class NormflowsGlow:
    """The peer library's Glow trained with our recipe: the same optimiser, batch, warm-up and clipping, Polyak
    averaging of the weights (``ema``, ramped up as our trainer ramps it; validation and tests use the average)
    and the learning rate's linear decay to zero over the final ``decay`` fraction of each ``train_for``."""

    def __init__(self, image_shape, n_scales: int, n_steps: int, hidden: int, data: ImageDataset, device: str,
                 batch_size: int, lr: float = TrainOptions.lr, warmup: int = TrainOptions.warmup,
                 grad_clip: float = TrainOptions.grad_clip, seed: int = 0,
                 keep_best_every: int | None = None, ema: float = TrainOptions.ema, decay: float = TrainOptions.decay):
        self._args = (image_shape, n_scales, n_steps, hidden, data, device, batch_size)
        self._kwargs = {"warmup": warmup, "grad_clip": grad_clip, "seed": seed, "keep_best_every": keep_best_every,
                        "ema": ema, "decay": decay}
        torch.manual_seed(seed)
        self.name = "normflows Glow"
        self.model = normflows_glow(image_shape, n_scales, n_steps, hidden).to(device)
        self.data, self.device, self.batch_size = data, device, batch_size
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.lr, self.warmup, self.grad_clip = lr, warmup, grad_clip
        self.ema, self.decay = ema, decay
        self.average: dict[str, torch.Tensor] | None = None  # the Polyak average of the parameters
        self.gen = torch.Generator().manual_seed(seed)
        self.step = 0
        self.trained_s = 0.0
        self.dims = math.prod(image_shape)
        self.n_val = min(1000, max(1, len(data.x_train) // 10))  # the same held-out part our trainer keeps
        # like our trainer's keep_best: validate every this many steps, test with the best validation's weights
        self.keep_best_every = keep_best_every
        self.best: tuple[float, dict] | None = None

    def params(self) -> int:
        return count_params(self.model)

    @property
    def steps(self) -> dict[str, int]:
        """The optimiser steps made so far, keyed as our Glow's single level is (``level_00``)."""
        return {"level_00": self.step}

    def fresh(self, run_dir: Path | None = None, lr: float | None = None) -> NormflowsGlow:
        """The same contender, untrained (built again from its seed), with learning rate ``lr`` if given; it has no
        run folder, so ``run_dir`` is ignored."""
        return NormflowsGlow(*self._args, lr=self.lr if lr is None else lr, **self._kwargs)

    def _x(self, images) -> torch.Tensor:
        return dequantize(to_tensor(images), self.data.n_bits, self.gen).to(self.device)

    def train_for(self, seconds: float) -> None:
        self.model.train()
        n = len(self.data.x_train) - self.n_val
        t0, bad = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            for g in self.opt.param_groups:
                g["lr"] = self.lr_at((time.perf_counter() - t0) / seconds)
            idx = np.sort(torch.randint(0, n, (self.batch_size,), generator=self.gen).numpy())
            loss = self.model.forward_kld(self._x(self.data.x_train[idx])) / (self.dims * math.log(2))
            self.opt.zero_grad(set_to_none=True)
            if not torch.isfinite(loss):  # skipped, as our trainer skips it; more in a row than it allows: diverged
                bad += 1
                if bad > MAX_NONFINITE_LOSSES:
                    raise Diverged(f"{self.name}: the loss stayed non-finite at lr {self.lr:g}")
                continue
            loss.backward()
            gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            if not torch.isfinite(gn):  # skipped and counted, as our trainer does; only a real step resets the count
                bad += 1
                continue
            bad = 0
            self.opt.step()
            self.step += 1
            self._average()
            if self.keep_best_every and self.step % self.keep_best_every == 0:
                self._validate()
        if self.keep_best_every:
            self._validate()
        self.trained_s += time.perf_counter() - t0

    def lr_at(self, progress: float) -> float:
        """The learning rate of the next step at ``progress`` (0..1) through a ``train_for``: our schedule (warm-up,
        constant, the final linear decay)."""
        lr = self.lr * min(1.0, (self.step + 1) / self.warmup)
        if self.decay > 0:
            lr *= min(1.0, max(0.0, 1.0 - progress) / self.decay)
        return lr

    @torch.no_grad()
    def _average(self) -> None:
        """Update the Polyak average after a step (decay ``min(ema, (1 + step) / (10 + step))``, as ours)."""
        if not self.ema:
            return
        params = dict(self.model.named_parameters())
        if self.average is None:
            self.average = {k: p.detach().clone() for k, p in params.items()}
            return
        d = min(self.ema, (1 + self.step) / (10 + self.step))
        for k, p in params.items():
            self.average[k].mul_(d).add_(p.detach(), alpha=1 - d)

    def _averaged_state(self) -> dict:
        """The model's state with the averaged parameters (its own where there is no average)."""
        state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        if self.average is not None:
            state.update({k: v.clone() for k, v in self.average.items()})
        return state

    @torch.no_grad()
    def sample_seconds(self, n: int, repeats: int) -> float:
        """Median seconds to draw ``n`` samples (with the weights that were tested)."""
        self.model.eval()
        return median_seconds(lambda: self.model.sample(n), repeats, self.device)

    def _validate(self) -> None:
        n = len(self.data.x_train)
        val = self.test_bpd(self.data.x_train[np.arange(n - self.n_val, n)])
        if self.best is None or val < self.best[0]:
            self.best = (val, self._averaged_state())
        self.model.train()

    @torch.no_grad()
    def test_bpd(self, images: np.ndarray, batch_size: int = 256, best: bool = False) -> float:
        """Bits/dim of ``images`` with the averaged weights; with ``best`` (and validation on), with the best
        validation's (averaged) weights."""
        weights = self.best[1] if best and self.best is not None else self._averaged_state()
        current = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(weights)
        try:
            return self._bpd(images, batch_size)
        finally:
            self.model.load_state_dict(current)

    @torch.no_grad()
    def _bpd(self, images: np.ndarray, batch_size: int) -> float:
        self.model.eval()
        gen = torch.Generator().manual_seed(0)
        total = 0.0
        for s in range(0, len(images), batch_size):
            x = dequantize(to_tensor(images[s : s + batch_size]), self.data.n_bits, gen).to(self.device)
            total += float(bits_per_dim(self.model.log_prob(x, None), self.dims, self.data.n_bits).sum())
        return total / len(images)


def glow_scales(image_shape) -> int:
    """The number of squeeze scales of our default Glow for images of ``image_shape``."""
    return glow_config(tuple(image_shape)).n_scales


#: the contenders named after Glow: this project's Glow as published (matched to a parameter count by its width,
#: as published Glow scales its width) and the variant with Wavelet Flow's coupling (matched by steps per scale)
GLOWS = {"Glow": ("glow", "width", range(8, 1025, 8)), "Glow (residual coupling)": ("glow-residual", "n_steps", range(1, 65))}


def matched_glow_config(model_type: str, image_shape, n_bits: int, target: int,
                        n_scales: int | None = None) -> GlowConfig:
    """Our Glow of ``model_type`` (``glow`` or ``glow-residual``) with the width or steps per scale (see
    :data:`GLOWS`) that bring its parameters closest to ``target``; ``n_scales`` replaces the library's number of
    scales (at most 3) when given. Where Glow's narrowest width is still more than 15% over ``target``, its steps
    per scale are reduced at that width."""
    _, field, values = next(v for v in GLOWS.values() if v[0] == model_type)
    scales = {"n_scales": n_scales} if n_scales else {}
    best = _closest(model_type, image_shape, n_bits, target, {**scales}, field, values)
    if best[1] > 1.15 * target and field != "n_steps":
        # even its narrowest coupling networks are too many parameters (many scales: the 1×1 convolutions of the
        # deep scales' channels dominate): fewer steps per scale at that width
        best = _closest(model_type, image_shape, n_bits, target, {**scales, field: getattr(best[0], field)},
                        "n_steps", range(1, 65))
    return best[0]


def _closest(model_type: str, image_shape, n_bits: int, target: int, fixed: dict, field: str,
             values) -> tuple[GlowConfig, int]:
    """The config (and its parameter count) whose ``field`` among ``values`` (ascending) brings the parameters
    closest to ``target``, the other entries ``fixed``."""
    best = None
    for value in values:
        cfg = default_config(model_type, tuple(image_shape), n_bits, {**fixed, field: value})
        p = count_params(build_model(model_type, cfg))
        if best is None or abs(p - target) < abs(best[1] - target):
            best = (cfg, p)
        if p > target:
            break
    return best


def matched_normflows_hidden(image_shape, n_scales: int, n_steps: int, target: int) -> int:
    """normflows Glow hidden width bringing its parameters closest to ``target``."""
    best = None
    for hidden in range(16, 1025, 8):
        p = count_params(normflows_glow(tuple(image_shape), n_scales, n_steps, hidden))
        if best is None or abs(p - target) < abs(best[1] - target):
            best = (hidden, p)
        if p > target:
            break
    return best[0]


def waveletflow_default(image_shape, n_bits: int) -> WaveletFlowConfig:
    return waveletflow_config(tuple(image_shape), n_bits)
