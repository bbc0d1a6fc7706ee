"""Super-resolution scored against the pixel-basis baselines: PSNR and SSIM of a model's super-resolution of
box-downsampled test images (one draw, and the mean of several, at chosen temperatures) and of bicubic and
Lanczos upsampling of the same inputs. The one implementation behind ``waveletflow superres-eval``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from waveletflow.errors import UserInputError
from waveletflow.metrics import psnr, ssim
from waveletflow.models.wavelet import WaveletModel

#: the side of SSIM's Gaussian window (Wang et al. 2004); its reflection padding needs images of more than half
SSIM_WINDOW = 11
#: the pixel-basis baselines, as Pillow names its filters
BASELINES = {"bicubic": "BICUBIC", "lanczos": "LANCZOS"}


def box_downsample(images: np.ndarray, factor: int) -> np.ndarray:
    """uint8 NHWC images → the mean of every ``factor``×``factor`` block, rounded to the nearest integer (the
    Haar ``average`` low-pass as an image: what the model's super-resolution takes and reproduces).

    >>> int(box_downsample(np.array([[[[0], [1]], [[2], [4]]]], dtype=np.uint8), 2)[0, 0, 0, 0])
    2
    """
    n, h, w, c = images.shape
    if h % factor or w % factor:
        raise UserInputError(f"{h}x{w} images cannot be reduced by {factor}")
    means = images.reshape(n, h // factor, factor, w // factor, factor, c).astype(np.float64).mean(axis=(2, 4))
    return np.floor(means + 0.5).astype(np.uint8)


def upsample(images: np.ndarray, factor: int, method: str) -> np.ndarray:
    """uint8 NHWC images enlarged ``factor`` times by Pillow's ``bicubic`` or ``lanczos`` filter."""
    from PIL import Image

    if method not in BASELINES:
        raise UserInputError(f"unknown upsampling {method!r}: give one of {', '.join(BASELINES)}")
    flt = getattr(Image.Resampling, BASELINES[method])
    out = []
    for im in images:
        size = (im.shape[1] * factor, im.shape[0] * factor)
        chans = [np.asarray(Image.fromarray(im[:, :, i]).resize(size, flt)) for i in range(im.shape[2])]
        out.append(np.stack(chans, axis=-1))
    return np.stack(out)


def _scores(pred: np.ndarray, truth: np.ndarray, max_value: float) -> tuple[float, float]:
    """Mean PSNR and SSIM over the images (NHWC arrays)."""
    p = torch.from_numpy(np.ascontiguousarray(pred)).permute(0, 3, 1, 2).double()
    t = torch.from_numpy(np.ascontiguousarray(truth)).permute(0, 3, 1, 2).double()
    return float(psnr(p, t, max_value).mean()), float(ssim(p, t, max_value).mean())


def superres_eval(model: WaveletModel, images: np.ndarray, factors: Sequence[int] = (2, 4), draws: int = 4,
                  temperatures: Sequence[float] = (1.0, 0.5), seed: int = 0, batch: int = 8) -> list[dict[str, Any]]:
    """PSNR (dB) and SSIM of ×``factor`` super-resolution of ``images`` (uint8 NHWC at one of the model's level
    sizes) from their low-pass images (:meth:`~waveletflow.models.wavelet.WaveletModel.downsample`: box-downsampled
    for Haar): the model's single draw and the mean of ``draws`` draws at each
    temperature, and each baseline of :data:`BASELINES`. Rows: ``factor``, ``method``, ``psnr``, ``ssim``,
    ``seconds`` (wall-clock of producing the outputs)."""
    if not isinstance(model, WaveletModel) or len(model.levels) < 2:
        raise UserInputError("super-resolution needs a multi-level model (waveletflow or mrcnf)")
    if draws < 1:
        raise UserInputError(f"--draws must be at least 1, got {draws}")
    images = np.asarray(images)
    n, h, w, c = images.shape
    heights = [hh for hh, _ in model.sizes]
    sizes = ", ".join(f"{a}x{b}" for a, b in model.sizes[1:])
    if (h, w) not in model.sizes[1:] or c != model.image_shape[0]:
        raise UserInputError(f"the test images are {w}x{h} with {c} channel{'s' if c > 1 else ''}; this model "
                             f"super-resolves to {sizes} with {model.image_shape[0]}")
    if min(h, w) <= SSIM_WINDOW // 2:
        side = SSIM_WINDOW // 2 + 1
        raise UserInputError(f"SSIM's {SSIM_WINDOW}x{SSIM_WINDOW} window needs images of at least {side}x{side}; the "
                             f"test images are {w}x{h}")
    max_value = float(2**model.n_bits - 1)
    if int(images.max()) > max_value:
        raise UserInputError(f"the test images hold pixel values up to {int(images.max())}, above {int(max_value)} "
                             f"(the model's {model.n_bits} bits): give data of the model's bit depth")
    factors = list(dict.fromkeys(factors))  # each factor once
    rows = []
    for factor in factors:
        if factor < 2 or factor & (factor - 1):
            raise UserInputError(f"the factor must be a power of two of at least 2, got {factor}")
        if h not in heights or h // factor not in heights or (h, w) not in model.sizes:
            raise UserInputError(f"{h}x{w} images reduced {factor} times are not a pair of this model's level sizes "
                                 f"({', '.join(f'{a}x{b}' for a, b in model.sizes)})")
        low = model.downsample(images, factor)
        for method in BASELINES:
            t0 = time.perf_counter()
            up = upsample(low, factor, method)
            rows.append({"factor": factor, "method": method, "seconds": round(time.perf_counter() - t0, 2),
                         **dict(zip(("psnr", "ssim"), _scores(up, images, max_value)))})
        for temp in temperatures:
            gen = torch.Generator().manual_seed(seed)
            t0 = time.perf_counter()
            total = np.zeros(images.shape, dtype=np.float64)
            first = None
            for _ in range(draws):
                out = np.concatenate([model.super_resolve(low[i : i + batch], temp, generator=gen, size=h)
                                      for i in range(0, n, batch)])
                first = out if first is None else first
                total += out
            seconds = time.perf_counter() - t0
            mean = np.floor(total / draws + 0.5).astype(np.uint8)
            rows.append({"factor": factor, "method": f"one draw, T={temp:g}", "seconds": round(seconds / draws, 2),
                         **dict(zip(("psnr", "ssim"), _scores(first, images, max_value)))})
            if draws > 1:
                rows.append({"factor": factor, "method": f"mean of {draws} draws, T={temp:g}",
                             "seconds": round(seconds, 2),
                             **dict(zip(("psnr", "ssim"), _scores(mean, images, max_value)))})
    return rows


def markdown(rows: list[dict[str, Any]], title: str) -> str:
    """The rows of :func:`superres_eval` as a markdown table."""
    lines = [f"**{title}**", "", "| factor | method | PSNR (dB) | SSIM | seconds |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| ×{r['factor']} | {r['method']} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['seconds']:.2f} |")
    return "\n".join(lines) + "\n"
