"""A unit of training: one optimiser over one level, or over several levels trained together, with its random
generator, step count and files in the run folder."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from waveletflow.data import Crops, periodic_pad, random_crop, random_flip
from waveletflow.errors import Diverged, UserInputError
from waveletflow.layers.precision import network_precision, precision_layers
from waveletflow.models import FlowModel
from waveletflow.models.io import load_level_weights, save_level_weights
from waveletflow.rundir import RunDir
from waveletflow.training.average import PolyakAverage
from waveletflow.training.options import TrainOptions

log = logging.getLogger("waveletflow")

#: the block means of a unit's training images are kept in memory up to this size (bytes)
MEANS_CACHE_BYTES = 1024**3


@dataclass(frozen=True)
class UnitResult:
    """How a unit's training ended: its ``levels`` (one level, or several trained jointly), the optimiser ``step``
    reached, the seconds trained, and the validation bits/dim of the weights its files hold (``val_bpd``: of the
    unit's dimensions; ``levels_val_bpd``: per level, of its own, for a joint unit). With the best weights kept,
    ``best_step`` is the step they come from and ``last_val_bpd`` the last validation. ``compile_s``: the compile
    time of a compiled training step."""

    levels: tuple[int, ...]
    step: int
    elapsed_s: float
    val_bpd: float | None
    levels_val_bpd: tuple[float, ...] | None = None
    best_step: int | None = None
    last_val_bpd: float | None = None
    compile_s: float | None = None

    @property
    def where(self) -> str:
        """``level 2`` or ``levels 0,1,2``."""
        return ("level " if len(self.levels) == 1 else "levels ") + ",".join(map(str, self.levels))


class TrainUnit:
    """Levels trained by one optimiser (Adam or Adamax) on their summed NLL (Yu et al. 2020 train each level on its own;
    several levels together give the bits/dim of the image when they are all of them).

    Each unit has its own generator, seeded from the run's seed and its levels, from which every random draw of
    its training comes (batch indices, dequantisation noise, flips, crops), so a resumed unit continues exactly
    where it stopped. Its checkpoint lives in the unit's folder; each level's weights and ``state.json`` in
    ``level_XX/``.

    Args:
        model: the whole model; the unit trains ``model.levels[l]`` for ``l`` in ``levels``.
        levels: one level, or the levels trained together.
        run: the run folder.
        opts: the training options.
        train_images: uint8 NHWC training images (arrays, or anything indexable by an array of ints).
        val_images: uint8 NHWC validation images, likewise.
        data_bits: the bit depth of the images' pixel values.
        writer: whether this process writes the unit's files (False for the other ranks of a data-parallel
            group, which train the same unit and only read its checkpoint).
    """

    def __init__(self, model: FlowModel, levels: int | list[int], run: RunDir, opts: TrainOptions,
                 train_images: Any, val_images: Any, data_bits: int, writer: bool = True):
        opts = opts.resolved()  # the device, batch and precision decided (a no-op for resolved options)
        self.levels = [levels] if isinstance(levels, int) else sorted(levels)
        self.single = self.levels[0] if len(self.levels) == 1 else None  # a one-level unit (crops apply to it)
        self.model, self.run, self.opts, self.writer = model, run, opts, writer
        self.train_images, self.val_images, self.data_bits = train_images, val_images, data_bits
        self.name = run.unit_name(self.levels)
        self.desc = f"level {self.single}" if self.single is not None else "levels " + ",".join(map(str, self.levels))
        if self.single is None:
            cropped = [v for v in self.levels if model.level_crop(v) is not None]
            if cropped:
                raise UserInputError(f"level {cropped[0]} trains on crops; joint training needs whole images")
        self.module = (model.levels[self.single] if self.single is not None
                       else torch.nn.ModuleDict({str(v): model.levels[v] for v in self.levels}))
        if opts.channels_last:  # before the optimiser and the average see the parameters
            self.module.to(memory_format=torch.channels_last)
        self.optimizer = opts.optimizer_for(self.module.parameters())
        self.average = PolyakAverage(self.module, opts.ema) if opts.ema > 0 else None
        seed_offset = self.single if self.single is not None else 1000 + sum(self.levels)
        self.generator = torch.Generator().manual_seed(opts.seed * 1009 + seed_offset)
        for m in self.module.modules():  # continuous flows draw their training noise from it too (exact resume)
            if hasattr(m, "noise_generator"):
                m.noise_generator = self.generator
        self.step, self.elapsed_before = 0, 0.0
        self.train_bpd: float | None = None  # of the last metrics row
        self.val_bpd: float | None = None  # of the last validation: the unit's, and each level's own
        self.levels_val_bpd: list[float] | None = None
        self.val_step: int | None = None  # the step of the last validation
        self.saved: tuple[int, int | None] | None = None  # (step, validation step) of the last checkpoint written
        self.crop = None if self.single is None else model.level_crop(self.single)
        c, h, w = model.image_shape
        # dimensions of a training example (a crop of the level's bands for a cropped level)
        self.dims = sum(model.level_dims[v] for v in self.levels) * ((self.crop**2 / (h * w)) if self.crop else 1.0)
        # the levels' input is drawn this many Haar steps below full resolution (block means of the pixels)
        self.steps = model.input_steps(self.levels)
        self._means: Tensor | None = None  # block means of every training image (whole-image coarse levels)
        # with keep_best: the (averaged) parameters of the best validation so far, and its figures
        self.best: dict[str, Any] | None = None
        self._precision_layers = precision_layers(self.module)  # switched to opts.precision in training steps
        pixels = max(model.level_hw(v)[0] * model.level_hw(v)[1] for v in self.levels)
        self.net_dtype = opts.network_dtype(pixels)
        self._objective = self._plain_objective
        if opts.compile:  # the function is compiled, not the module: its state dict keeps its plain names
            self._objective = torch.compile(self._plain_objective, dynamic=False)
        self.compile_s: float | None = None  # seconds of the first (compiling) training step, with opts.compile

    # ----- start or resume ---------------------------------------------------------------------------
    def open(self) -> TrainUnit:
        """Resume from the unit's checkpoint, or start: each level from its saved weights where another unit
        trained it, from a data-dependent initialisation otherwise."""
        self.model.train()
        if self.run.has_checkpoint(self.levels):
            self._check_not_superseded()
            ck = self._load_checkpoint()
            self.generator.set_state(ck["rng"])
            self.step, self.elapsed_before = int(ck["step"]), float(ck["elapsed_s"])
        else:
            self._start()
            if self.average is not None:
                self.average.reset()  # from the initialised (or saved) weights
        if self.writer:
            self.run.truncate_metrics(self.levels, self.step)  # rows a stopped process wrote after its checkpoint
        return self

    def _check_not_superseded(self) -> None:
        """Refuse to resume a unit whose levels were trained further by another unit since its checkpoint
        (resuming would overwrite the newer weights)."""
        for level in self.levels:
            try:
                state = self.run.read_state(level)
            except UserInputError:
                continue
            writer = (state or {}).get("unit", self.name)
            if writer != self.name:
                raise UserInputError(
                    f"level {level} was trained further in {writer} after {self.name}/"
                    f"{self.run.checkpoint_file(self.levels).name} was written; move {self.run.unit_dir(self.levels)} "
                    f"away to continue from the newer weights"
                )

    def _load_checkpoint(self) -> dict[str, Any]:
        """Load the unit's weights and optimiser state from its checkpoint; returns the checkpoint."""
        ck = self.run.load_checkpoint(self.levels)
        try:
            self.module.load_state_dict(ck["model"])
            self.optimizer.load_state_dict(ck["optimizer"])
            if self.average is not None:
                if "average" in ck:
                    self.average.load_state_dict(ck["average"])
                else:  # a checkpoint written without averaging: the average starts here
                    self.average.reset()
            ck["rng"], ck["step"], ck["elapsed_s"]  # noqa: B018 - presence check
            self.best = ck.get("best") if self.opts.keep_best else None
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise UserInputError(f"checkpoint {self.run.checkpoint_file(self.levels)} does not fit this model "
                                 f"({type(exc).__name__})") from None
        return ck

    def _start(self) -> None:
        fresh = []
        for level in self.levels:
            if self.run.has_weights(level):
                load_level_weights(self.model, level, self.run.path)
                log.info("level %d starts from its saved weights (%s)", level, self.run.weights_file(level))
            else:
                fresh.append(level)
        if not fresh:
            return
        self.model.initialize(fresh, self.draw(self.opts.init_batch), steps=self.steps)

    # ----- data ------------------------------------------------------------------------------------
    def draw(self, n: int) -> Tensor:
        """A batch of ``min(n, #images)`` training inputs of the unit's levels, drawn in this order from the
        unit's generator: indices, the data's crops (if cropped), the level's crop (of the pixels, at positions
        that keep its Haar blocks whole, so its coefficients are those of the whole image; for a lifted wavelet a
        window of the periodic image with the level's margin around it), dequantisation noise,
        flips (if asked for). The input is the low-pass ``self.steps`` Haar steps down (:meth:`FlowModel.prepare`);
        for whole images the block means of every training image are computed once and kept."""
        n_train = len(self.train_images)
        idx = np.sort(torch.randint(0, n_train, (min(n, n_train),), generator=self.generator).numpy())
        if self.steps and self.crop is None and self._cache_means():
            x = self.model.prepare_means(self._means[torch.from_numpy(idx)], self.steps, self.generator)
        else:
            if isinstance(self.train_images, Crops):  # random crops of larger images, pixel values unchanged
                images = self.train_images.random(idx, self.generator)
            else:
                images = self.train_images[idx]
            if self.crop is not None:
                k = torch.as_tensor(np.asarray(images)).permute(0, 3, 1, 2)
                margin = self.model.level_margin(self.single)
                if margin:  # a window of the periodic image around the crop (a lifted wavelet's coefficients)
                    k = random_crop(periodic_pad(k, margin), self.crop + 2 * margin, self.generator,
                                    align=2 ** (len(self.model.levels) - self.single))
                else:
                    k = random_crop(k, self.crop, self.generator, align=2 ** (self.steps + 1))
                images = k.permute(0, 2, 3, 1)
            x = self.model.prepare(images, self.generator, self.data_bits, steps=self.steps)
        if self.opts.flip:
            x = random_flip(x, self.generator)
        return x.contiguous(memory_format=torch.channels_last) if self.opts.channels_last else x

    def _cache_means(self) -> bool:
        """Compute (once) the block means of every training image at the levels' input size, if they fit in
        :data:`MEANS_CACHE_BYTES`; False when they would not (or the data is random crops)."""
        if self._means is not None:
            return True
        if isinstance(self.train_images, Crops):
            return False
        _, h, w, c = self.train_images.shape
        n = len(self.train_images)
        if n * c * (h >> self.steps) * (w >> self.steps) * 8 > MEANS_CACHE_BYTES:
            return False
        chunk = max(1, 2**26 // (h * w * c))
        self._means = torch.cat([self.model.block_means(self.train_images[np.arange(i, min(n, i + chunk))],
                                                        self.steps, self.data_bits) for i in range(0, n, chunk)])
        return True

    def precision(self):
        """A context in which the unit's coupling and conditioning networks run in the training precision."""
        return network_precision(self._precision_layers, self.net_dtype)

    def objective(self, x: Tensor):
        """The unit's training objective on batch ``x`` (:meth:`FlowModel.objective`) in the training precision,
        compiled with ``opts.compile``."""
        with self.precision():
            return self._objective(x)

    def _plain_objective(self, x: Tensor):
        return self.model.objective(self.levels, x, steps=self.steps)

    def batches(self) -> Iterator[Tensor]:
        """Training batches of ``opts.batch_size``, drawn when asked for."""
        while True:
            yield self.draw(self.opts.batch_size)

    def averaged(self):
        """A context in which the unit's levels hold their Polyak-averaged weights (when averaging)."""
        return nullcontext() if self.average is None else self.average.applied()

    def set_lr(self, progress: float = 0.0) -> float:
        """Set the learning rate of the next step at ``progress`` (0..1) through the budget; returns it."""
        lr = self.opts.lr_at(self.step, progress)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        return lr

    def validate(self) -> float:
        """Bits/dim of the validation images over the unit's dimensions (the dimension-weighted mean of each
        level's own bits/dim, fixed dequantisation noise); also kept in ``val_bpd`` and ``levels_val_bpd``."""
        with self.averaged():
            res = self.model.bits_per_dim(self.val_images, levels=self.levels, data_bits=self.data_bits)
        dims = [self.model.level_dims[v] for v in self.levels]
        self.levels_val_bpd = [float(b) for b in res.own]
        self.val_bpd = sum(b * d for b, d in zip(self.levels_val_bpd, dims)) / sum(dims)
        self.val_step = self.step
        if self.opts.keep_best and (self.best is None or self.val_bpd < self.best["val_bpd"]):
            with self.averaged():
                params = {n: p.detach().cpu().clone() for n, p in self.module.named_parameters()}
            self.best = {"val_bpd": self.val_bpd, "levels_val_bpd": list(self.levels_val_bpd), "step": self.step,
                         "params": params}
        return self.val_bpd

    @contextmanager
    def kept(self) -> Iterator[None]:
        """A context in which the unit's levels hold the weights it keeps: those of the best validation with
        ``keep_best``, else the Polyak average (when averaging) or its own."""
        if self.best is None:
            with self.averaged():
                yield
            return
        own = {n: p.detach().clone() for n, p in self.module.named_parameters()}
        with torch.no_grad():
            for n, p in self.module.named_parameters():
                p.copy_(self.best["params"][n])
        try:
            yield
        finally:
            with torch.no_grad():
                for n, p in self.module.named_parameters():
                    p.copy_(own[n])

    # ----- checkpoints -----------------------------------------------------------------------------
    def save(self, elapsed_s: float) -> bool:
        """Write the unit's checkpoint and each level's weights and state atomically; refuses (returns False)
        when a parameter is not finite. Each level's ``state.json`` names the unit that wrote its weights; its
        ``weights.safetensors`` holds the Polyak-averaged weights when averaging (the checkpoint keeps both)."""
        if not self.finite():
            return False
        checkpoint = {
            "step": self.step,
            "elapsed_s": elapsed_s,
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": self.generator.get_state(),
        }
        if self.average is not None:
            checkpoint["average"] = self.average.state_dict()
        if self.best is not None:
            checkpoint["best"] = self.best
        self.run.save_checkpoint(self.levels, checkpoint)
        self.saved = (self.step, self.val_step)
        for i, level in enumerate(self.levels):
            with self.kept():
                save_level_weights(self.model, level, self.run.path)
            state = {"step": self.step, "elapsed_s": round(elapsed_s, 2), "unit": self.name,
                     "train_bpd": self.train_bpd,
                     "val_bpd": None if self.val_bpd is None else self.levels_val_bpd[i]}
            if self.best is not None:  # the weights file holds the best validation's weights
                state.update(val_bpd=self.best["levels_val_bpd"][i], best_step=self.best["step"],
                             last_val_bpd=state["val_bpd"])
            if self.single is None:
                state["unit_val_bpd"] = self.val_bpd if self.best is None else self.best["val_bpd"]
            self.run.write_state(level, state)
        return True

    def finite(self) -> bool:
        """Whether every parameter (and its Polyak average) is finite."""
        if not all(torch.isfinite(p).all() for p in self.module.parameters()):
            return False
        return self.average is None or self.average.finite()

    def finish(self, elapsed_s: float) -> UnitResult:
        """Validate (if the last step was not validated), write the final checkpoint (unless the last step's,
        validated, was written); the unit's summary. Only the writer validates and writes."""
        if self.writer:
            if self.val_bpd is None or self.val_step != self.step:
                self.validate()
            if self.saved == (self.step, self.step):
                return self.summary(elapsed_s)
            if not self.save(elapsed_s):
                raise Diverged(f"{self.desc}: parameters became non-finite; lower --lr (its last checkpoint, if one "
                               "was written, is kept)")
        return self.summary(elapsed_s)

    def restore(self) -> None:
        """Go back to the last checkpoint's weights and optimiser state after the parameters diverged."""
        if not self.run.has_checkpoint(self.levels):
            raise Diverged(f"{self.desc}: parameters became non-finite before the first checkpoint; lower --lr")
        ck = self._load_checkpoint()
        log.warning("%s diverged; restored the checkpoint of step %d", self.desc, int(ck["step"]))

    def summary(self, elapsed_s: float) -> UnitResult:
        """What the unit's weights hold after ``elapsed_s`` seconds of training (see :class:`UnitResult`)."""
        best = self.best
        per_level = best["levels_val_bpd"] if best is not None else self.levels_val_bpd
        return UnitResult(
            levels=tuple(self.levels), step=self.step, elapsed_s=elapsed_s,
            val_bpd=best["val_bpd"] if best is not None else self.val_bpd,
            levels_val_bpd=None if self.single is not None or per_level is None else tuple(per_level),
            best_step=None if best is None else best["step"],
            last_val_bpd=None if best is None else self.val_bpd,
            compile_s=None if self.compile_s is None else round(self.compile_s, 2))
