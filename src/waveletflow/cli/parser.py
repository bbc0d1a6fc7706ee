"""The parser of the ``waveletflow`` command: its sub-commands and options (one ``error:`` line, exit code 2, for
an option it refuses)."""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any

from waveletflow import __version__

DESCRIPTION = ("The waveletflow command: train, plan, gather, evaluate, sample, quality, super-resolve, "
               "superres-eval, info, pyramid, demo.")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit code 2
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def _parallel(text: str) -> int | str:
    """``auto`` or a whole number of level processes."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"give 'auto' or a number of processes, not {text!r}") from None


def _seed(text: str) -> int:
    """A seed: a whole number in 0 .. 2^32 - 1."""
    from waveletflow.training.options import MAX_SEED

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"give a whole number, not {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed lies in 0..{MAX_SEED}, got {value}")
    return value


def _train_default(name: str):
    from waveletflow.training import TrainOptions

    return {f.name: f.default for f in fields(TrainOptions)}[name]


def add_train(p: argparse.ArgumentParser) -> list[argparse.Action]:
    """Add the options of ``train`` to ``p`` (``plan`` takes them too); returns the actions added, by which
    ``plan`` passes the options given on to its jobs."""
    from waveletflow.models import DEFAULT_MODEL_TYPE, MODEL_TYPES, PRESETS
    from waveletflow.models.config import MRCNF_PRESETS
    from waveletflow.training.options import OPTIMIZERS, PRECISIONS, SCHEDULES
    from waveletflow.wavelets import WAVELETS

    d = _train_default
    actions: list[argparse.Action] = []

    def arg(*names: str, group=None, **kw: Any) -> None:
        actions.append((group or p).add_argument(*names, **kw))

    arg("--data", required=True, help="digits, mnist, fashion-mnist, cifar10, an .npz file or an image folder")
    arg("--out", required=True, help="run folder (created, or resumed when it exists)")
    arg("--model", choices=list(MODEL_TYPES), default=None,
                   help="; ".join(f"{t.name}: {t.summary}" for t in MODEL_TYPES.values()) + f" (default {DEFAULT_MODEL_TYPE})")
    arg("--level", default="all", help="'all' or level numbers, e.g. 2 or 0,3")
    arg("--parallel", type=_parallel, default="auto",
                   help="train the levels in this many processes sharing the cores (default auto: one per level, at "
                        "most one per core, or per GPU on CUDA; threads split by the levels' work)")
    arg("--joint", action="store_true", default=None,
                   help="train the levels together: one optimiser on the image's bits/dim (default: each on its own)")
    g = p.add_mutually_exclusive_group()
    arg("--steps", group=g, type=int, help="optimiser steps per level (total, counting resumed steps)")
    arg("--time-budget", group=g, type=float, help="wall-clock seconds for the whole command")
    arg("--batch-size", type=int, help="images per step (default: 16 on a CPU, 64 on a GPU)")
    arg("--lr", type=float, help=f"learning rate (default {d('lr')})")
    arg("--warmup", type=int, help=f"linear learning-rate warm-up steps (default {d('warmup')})")
    arg("--schedule", choices=SCHEDULES,
                   help="how --time-budget is shared among levels: up front by their dimensions, or in slices to the "
                        f"level whose bits/dim fall fastest (default {d('schedule')})")
    arg("--optimizer", choices=list(OPTIMIZERS), help=f"the optimiser (default {d('optimizer')})")
    arg("--ema", type=float, help="Polyak averaging of the weights with this decay; evaluate, sample and "
                                             f"validation use the average (default {d('ema')}; 0: off)")
    arg("--decay", type=float, help="decay the learning rate linearly to 0 over this final fraction of the "
                                               f"budget (default {d('decay')}; 0: none)")
    arg("--seed", type=_seed, help=f"seed of the model and the data order (default {d('seed')})")
    arg("--device", help=f"auto, cpu or cuda (default {d('device')})")
    arg("--config", help="JSON file overriding the model config (e.g. levels, widths, crops)")
    arg("--preset", help=f"named preset: Wavelet Flow's ({', '.join(PRESETS)}), MRCNF's "
                                    f"({', '.join(MRCNF_PRESETS)})")
    arg("--n-bits", type=int, help="model bit depth (default: the data's)")
    arg("--image-size", type=int, help="resize a folder's images (shorter side, bicubic) and centre-crop "
                                                  "them to this side (default: their own size)")
    arg("--wavelet", choices=WAVELETS,
                   help="a new wavelet model's wavelet: haar (as published; the default), or CDF 5/3 or 9/7 by lifting "
                        "(smoother low-pass images; levels on crops then see the image extended periodically)")
    arg("--context", choices=["none", "dilated", "attention"],
                   help="what a new Wavelet Flow's detail levels see of the low-pass image beyond their couplings' "
                        "reach: none (as published), dilated (a conditioning network of dilated convolutions) or "
                        "attention (that, and self-attention over the whole image) (default: the preset's)")
    arg("--noise-std", type=float,
                   help="a new model of noisy images: train (and evaluate) on images plus Gaussian noise of this "
                        "standard deviation, in pixel units of [0, 1) (default 0: none; its bits/dim are then those of "
                        "the noisy images; sample --denoise takes samples back)")
    arg("--crop", type=int, help="train on random CROP×CROP crops of the images, pixel values unchanged "
                                            "(centre crops for validation); the model is made for that size")
    arg("--flip", action="store_true", default=None, help="random horizontal flips")
    arg("--allow-other-data", action="store_true",
                   help="go on training an existing run on data other than it was made with (refused otherwise)")
    arg("--keep-best", action=argparse.BooleanOptionalAction, default=None,
                   help="each level keeps the weights of its best validation (early stopping; the default): "
                        "--no-keep-best keeps the last ones")
    arg("--precision", choices=PRECISIONS,
                   help="precision of the coupling and conditioning networks in training steps; log-dets, "
                        "evaluation and sampling stay float32 (default auto: bf16 on a GPU that has it and on a CPU "
                        "with AMX units, fp32 elsewhere)")
    arg("--compile", action="store_true", default=None,
                   help="compile each level's training step with torch.compile (the compile time is reported apart)")
    arg("--eval-every", type=int, help=f"validation every this many steps (default {d('eval_every')})")
    arg("--checkpoint-every", type=int,
                   help=f"write a checkpoint every this many steps (default {d('checkpoint_every')}; also every "
                        f"{d('checkpoint_seconds'):g} s)")
    arg("--no-data-parallel", action="store_true",
                   help="under torchrun with more ranks than levels: leave the further ranks without a level (they "
                        "exit) instead of training the levels with the most work data-parallel")
    arg("--threads", type=int, help="torch CPU threads")
    arg("--quiet", action="store_true", help="no progress bars")
    arg("--no-curves", action="store_true", help="write no curves.png and print no summary")
    return actions


def _add_solver(p: argparse.ArgumentParser) -> None:
    from waveletflow.layers.solver import DEFAULT_EVAL_SOLVER as S

    p.add_argument("--ode-solver", help=f"continuous models: the ODE solver to evaluate with (default: the model's, {S.method})")
    p.add_argument("--ode-tol", type=float, help=f"continuous models: its atol = rtol (default: the model's, {S.atol:g})")


def _add_run_io(p: argparse.ArgumentParser, out_help: str | None) -> None:
    p.add_argument("run")
    if out_help is not None:
        p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--temperature", default="1.0", help="one value, or one per level separated by commas")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--device", default="auto")
    _add_solver(p)
    g = p.add_argument_group("annealed sampling (MCMC)")
    g.add_argument("--mcmc", action="store_true",
                   help="draw each level from p(level | below)^(1/T^2) by NUTS in its latent space, coarse to fine "
                        "(annealed sampling; T = 1 is exact sampling)")
    g.add_argument("--mcmc-steps", type=int, default=30, help="NUTS iterations after the warm-up (default 30)")
    g.add_argument("--mcmc-warmup", type=int, default=10, help="step-size adaptation iterations (default 10)")
    g.add_argument("--mcmc-accept", type=float, default=0.6, help="target acceptance of the adaptation (default 0.6)")
    g.add_argument("--mcmc-depth", type=int, default=10, help="maximum NUTS tree depth (default 10)")
    p.add_argument("--json", action="store_true", help="print one JSON object (with the MCMC statistics per level)")


def build_parser() -> argparse.ArgumentParser:
    from waveletflow.models.base import EVAL_BATCH_SIZE

    parser = _Parser(prog="waveletflow", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"waveletflow {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, required=True)
    add_train(sub.add_parser("train", help="train or resume a model, level by level"))

    p = sub.add_parser("plan", help="print one 'train' command per cluster job, each training some levels into its "
                                    "own part run folder, and the 'gather' command that combines them")
    add_train(p)
    p.add_argument("--nodes", type=int, help="the number of jobs (default: one per level)")
    p.add_argument("--slurm", metavar="FILE", help="also write the jobs as a Slurm job array script (a new file)")

    p = sub.add_parser("gather", help="combine part run folders (trained by 'plan's jobs) into one run folder")
    p.add_argument("--out", required=True, help="the run folder (created, or a run of the same model)")
    p.add_argument("parts", nargs="+", metavar="PART", help="part run folders, each made by 'train --level ...'")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("evaluate", help="test bits/dim with the per-level breakdown")
    p.add_argument("run")
    p.add_argument("--data", required=True)
    p.add_argument("--split", choices=["test", "val", "train"], default="test",
                   help="test images, the training images the run held out for validation (val: for tuning "
                        "without touching the test images), or the training images")
    p.add_argument("--limit", type=int, help="evaluate the first N images")
    p.add_argument("--batch-size", type=int, default=EVAL_BATCH_SIZE, help=f"images per batch (default {EVAL_BATCH_SIZE})")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the dequantisation noise")
    p.add_argument("--device", default="auto")
    p.add_argument("--image-size", type=int, help="resize a folder's images to this side (default: the run's)")
    p.add_argument("--crop", type=int, help="evaluate centre crops of this side (default: the run's)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_solver(p)

    p = sub.add_parser("sample", help="draw samples into a PNG grid")
    _add_run_io(p, "PNG file")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--npz", help="also save the samples (uint8 NHWC, key x)")
    p.add_argument("--denoise", action="store_true",
                   help="one denoising step x + s^2 * grad log p(x) per sample (Tweedie's formula with the model's exact "
                        "score; for a model trained with --noise-std s)")

    p = sub.add_parser("super-resolve", help="sample a full-size image whose low-pass is the input")
    _add_run_io(p, "PNG file")
    p.add_argument("--input", required=True, help="PNG at one of the model's level sizes")
    p.add_argument("--size", type=int, help="stop at this level height (default: the model's full size)")
    p.add_argument("--downsample", type=int, metavar="F",
                   help="the input is a full-size image: reduce it F times (the model's low-pass: block means for Haar) first, and write the "
                        "low-res input (enlarged), the super-resolution and the original side by side")

    p = sub.add_parser("quality", help="sample quality: FD and KID against test images in a classifier's features")
    _add_run_io(p, None)
    p.add_argument("--data", required=True, help="the dataset with class labels (y_train, y_test)")
    p.add_argument("--n", type=int, default=2000, help="samples, and test images compared with (default 2000)")
    p.add_argument("--denoise", action="store_true",
                   help="one denoising step x + s^2 * grad log p(x) per sample (Tweedie's formula with the model's exact "
                        "score; for a model trained with --noise-std s)")
    p.add_argument("--image-size", type=int, help="resize a folder's images to this side (default: the run's)")
    p.add_argument("--out", help="also save the first 64 samples as a PNG grid")
    p.add_argument("--baselines", action="store_true",
                   help="also score training images and blocky, blurred and noise copies of them")

    p = sub.add_parser("superres-eval", help="PSNR and SSIM of super-resolution against bicubic and Lanczos")
    p.add_argument("run")
    p.add_argument("--data", required=True, help="test images at one of the model's level sizes")
    p.add_argument("--factor", default="2,4", help="comma list of upscaling factors (default 2,4)")
    p.add_argument("--draws", type=int, default=4, help="draws averaged for the mean (default 4)")
    p.add_argument("--temperature", default="1,0.5", help="comma list of temperatures (default 1,0.5)")
    p.add_argument("--limit", type=int, help="the first N test images")
    p.add_argument("--image-size", type=int, help="resize a folder's images to this side first")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")

    p = sub.add_parser("info", help="model type, sizes, parameters and training state per level")
    p.add_argument("run", help="a run folder, or a preset name (e.g. 1024x1024, mrcnf-published) to describe its model")
    p.add_argument("--channels", type=int, default=3, help="image channels, for a preset (default 3)")
    p.add_argument("--image-size", type=int, help="image side, for an MRCNF preset (default 32)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("pyramid", help="write the wavelet pyramid of a few images as a PNG")
    p.add_argument("--data", default="digits")
    p.add_argument("--out", required=True)
    p.add_argument("--base-size", type=int, default=1)
    p.add_argument("--convention", default="average", choices=["orthonormal", "average", "unimodular"])
    p.add_argument("--wavelet", default="haar", choices=["haar", "cdf53", "cdf97"],
                   help="haar, or CDF 5/3 or 9/7 by lifting (default haar)")
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--image-size", type=int)

    p = sub.add_parser("demo", help="the quick start: train on digits, evaluate, sample, super-resolve, curves")
    p.add_argument("--out", default="runs/digits")
    p.add_argument("--data", default="digits")
    p.add_argument("--time-budget", type=float, default=150.0)
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    return parser
