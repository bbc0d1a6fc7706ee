"""Model configs (frozen dataclasses), their defaults for a data set, and the ``model.json`` format.

A Wavelet Flow or MRCNF config lists one entry per model level: ``levels[0]`` is the base flow and
``levels[l]`` the flow of the details of level ``l`` (coarse to fine). An empty ``levels`` means default
entries for every level. Values are checked when a config is made; which model it builds is not.

The factories (:func:`glow_config`, :func:`waveletflow_config`, :func:`mrcnf_config`) take the image shape
and bit depth positionally; ``overrides`` (any config keys, ``image_shape`` and ``n_bits`` included) win.

>>> cfg = waveletflow_config((1, 8, 8), n_bits=5)
>>> [lv.width for lv in cfg.levels], cfg.sizes
([32, 32, 48, 64], [(1, 1), (2, 2), (4, 4), (8, 8)])
>>> WaveletFlowConfig.from_dict(cfg.to_dict()) == cfg
True
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from waveletflow.config import LIMITS, Config, check_choice, check_limits, check_positive, convert, require
from waveletflow.errors import UserInputError
from waveletflow.layers.coupling import COUPLING_NETS, COUPLINGS
from waveletflow.layers.solver import DEFAULT_EVAL_SOLVER, DEFAULT_TRAIN_SOLVER, SolverConfig
from waveletflow.models.presets import HIGHRES_PATCH, MRCNF_PRESETS, PRESET_SOURCES, PRESETS
from waveletflow.wavelets import BOUNDARIES, CONVENTIONS, WAVELETS, crop_margin, pyramid_sizes

__all__ = [
    "HIGHRES_PATCH", "MRCNF_PRESETS", "PRESETS", "PRESET_SOURCES", "CNFLevelConfig", "GlowConfig", "GlowLevelConfig", "MRCNFConfig", "SolverConfig",
    "WaveletFlowConfig", "glow_config", "glow_residual_config", "mrcnf_config",
    "waveletflow_config",
]

log = logging.getLogger("waveletflow")

BaseSize = int | tuple[int, int]


def _check_data(image_shape: tuple[int, int, int], n_bits: int, display_max: int | None) -> None:
    require(len(image_shape) == 3 and min(image_shape) > 0,
            f"image_shape must be 3 positive sizes (C, H, W), got {list(image_shape)}")
    require(1 <= n_bits <= 16, f"n_bits must be between 1 and 16, got {n_bits}")
    check_positive(display_max=display_max)


def _check_noise(noise_std: float) -> None:
    require(isinstance(noise_std, (int, float)) and 0.0 <= noise_std <= 1.0,
            f"noise_std must be in [0, 1] (pixel units of [0, 1)), got {noise_std}")


def _hw(base_size: BaseSize) -> tuple[int, int]:
    return (base_size, base_size) if isinstance(base_size, int) else (base_size[0], base_size[1])


@dataclass(frozen=True)
class GlowConfig(Config):
    """Glow (Kingma & Dhariwal 2018): ``n_scales`` × [squeeze → ``n_steps`` steps → split] over the image.

    The defaults are Glow as published: its coupling network (``coupling_net: glow``) and the sigmoid scale
    (``coupling: glow``); ``coupling_net: residual`` with ``coupling: affine`` is Wavelet Flow's coupling instead
    (``n_blocks`` residual blocks, tanh scale), the model type ``glow-residual``. ``noise_std`` > 0: the model
    is of images with Gaussian noise of that standard deviation added (:attr:`FlowModel.noise_std
    <waveletflow.models.FlowModel.noise_std>`), for every model type. ``checkpoint`` recomputes each step in the
    backward pass instead of keeping its activations (less memory, about a third more compute; the same model).
    """

    image_shape: tuple[int, int, int]
    n_bits: int = 8
    n_scales: int = 3
    n_steps: int = 8
    width: int = 64
    n_blocks: int = 1
    coupling: str = "glow"
    coupling_net: str = "glow"
    lu: bool = True
    display_max: int | None = None
    noise_std: float = 0.0
    checkpoint: bool = False

    def __post_init__(self) -> None:
        _check_data(self.image_shape, self.n_bits, self.display_max)
        _check_noise(self.noise_std)
        check_positive(n_scales=self.n_scales, n_steps=self.n_steps, width=self.width, n_blocks=self.n_blocks)
        check_limits(n_scales=self.n_scales, n_steps=self.n_steps, width=self.width, n_blocks=self.n_blocks)
        check_choice("coupling", self.coupling, COUPLINGS)
        check_choice("coupling_net", self.coupling_net, COUPLING_NETS)


@dataclass(frozen=True)
class GlowLevelConfig(Config):
    """The flow of one Wavelet Flow level: ``n_steps`` Glow steps whose couplings have ``n_blocks`` blocks
    of ``width`` channels. The base (level 0) may be multi-scale (``n_scales``; ``squeeze`` None: where its
    size allows); a detail level may train on ``crop``×``crop`` crops of the images (Yu et al. 2020), and with
    ``checkpoint`` recompute its steps in the backward pass instead of keeping their activations (less memory
    for whole-image levels, about a third more compute). ``cond_width`` > 0 gives a detail level a conditioning
    network: its couplings see ``cond_width`` features of the low-pass image, computed once per pass by
    ``cond_depth`` dilated 3×3 convolutions, beside the image itself (:class:`~waveletflow.layers.EncodedCondition`;
    0: the low-pass image alone, as released); ``cond_attention`` > 0 adds that many self-attention layers over
    the whole low-pass image to it (global context, :class:`~waveletflow.layers.conditioning.GlobalContext`)."""

    n_steps: int = 8
    width: int = 64
    n_blocks: int = 1
    coupling: str = "affine"
    n_scales: int = 1
    squeeze: bool | None = None
    crop: int | None = None
    checkpoint: bool = False
    cond_width: int = 0
    cond_depth: int = 3
    cond_attention: int = 0

    def __post_init__(self) -> None:
        check_positive(n_steps=self.n_steps, width=self.width, n_blocks=self.n_blocks, n_scales=self.n_scales,
                       crop=self.crop)
        check_limits(n_steps=self.n_steps, width=self.width, n_blocks=self.n_blocks, n_scales=self.n_scales,
                     cond_width=self.cond_width, cond_depth=self.cond_depth)
        check_choice("coupling", self.coupling, COUPLINGS)
        check_positive(cond_depth=self.cond_depth)
        require(self.cond_width >= 0, f"cond_width must be 0 (none) or positive, got {self.cond_width}")
        require(0 <= self.cond_attention <= 16, f"cond_attention must be in 0..16 layers, got {self.cond_attention}")
        require(not self.cond_attention or self.cond_width > 0,
                "cond_attention needs the conditioning network's features: give cond_width too")

    @property
    def context(self) -> str:
        """What a detail level's couplings see of the low-pass image beyond their own reach: ``none``,
        ``dilated`` (the conditioning network) or ``attention`` (with global self-attention)."""
        return "attention" if self.cond_attention else "dilated" if self.cond_width else "none"


class _Pyramid:
    """Shared by the wavelet models: the pyramid of sizes and one ``levels`` entry per level."""

    image_shape: tuple[int, int, int]
    base_size: BaseSize
    levels: tuple[Any, ...]

    @property
    def base_hw(self) -> tuple[int, int]:
        """(height, width) of the base image."""
        return _hw(self.base_size)

    @property
    def sizes(self) -> list[tuple[int, int]]:
        """(height, width) of the images of the pyramid, base first, the full image last."""
        return pyramid_sizes(self.image_shape[1:], self.base_hw)

    def _fill_levels(self, entry: type) -> None:
        """Default entries for an empty ``levels``; else exactly one entry per level."""
        n = len(self.sizes)
        if not self.levels:
            object.__setattr__(self, "levels", tuple(entry() for _ in range(n)))
        (h, w), (bh, bw) = self.image_shape[1:], self.base_hw
        detail = f"{n - 1} detail level{'' if n == 2 else 's'}"
        require(len(self.levels) == n, f"{h}×{w} images with a {bh}×{bw} base have {n} levels (the base and "
                                       f"{detail}), but the config lists {len(self.levels)}")


@dataclass(frozen=True)
class WaveletFlowConfig(_Pyramid, Config):
    """Wavelet Flow (Yu et al. 2020): a Glow on the ``base_size`` image, then per wavelet level a Glow on the
    details conditioned on the low-pass image; ``levels[l]`` configures the flow of level ``l``. ``wavelet`` is
    ``haar`` (as published) or a CDF wavelet by lifting (``cdf53``, ``cdf97``: :mod:`waveletflow.wavelets.lifting`),
    whose ``boundary`` is ``symmetric`` (whole-sample symmetric extension) or ``periodic`` (what crops of a level
    need with a lifted wavelet: a window of the periodic image, with the margin of
    :func:`~waveletflow.wavelets.crop_margin`, gives the whole image's coefficients exactly)."""

    image_shape: tuple[int, int, int]
    n_bits: int = 8
    base_size: BaseSize = 1
    convention: str = "average"
    lu: bool = True
    levels: tuple[GlowLevelConfig, ...] = ()
    display_max: int | None = None
    wavelet: str = "haar"
    noise_std: float = 0.0
    boundary: str = "symmetric"

    def __post_init__(self) -> None:
        _check_data(self.image_shape, self.n_bits, self.display_max)
        _check_noise(self.noise_std)
        check_choice("Haar convention", self.convention, CONVENTIONS)
        check_choice("wavelet", self.wavelet, WAVELETS)
        check_choice("boundary", self.boundary, BOUNDARIES)
        self._fill_levels(GlowLevelConfig)
        require(self.levels[0].crop is None, "level 0 (the base) cannot be cropped; crop is for detail levels")
        require(not self.levels[0].checkpoint, "level 0 (the base) has no checkpoint option; it is for detail levels")
        require(self.levels[0].cond_width == 0 and self.levels[0].cond_attention == 0,
                "level 0 (the base) has no low-pass image to condition on; cond_width is for detail levels")
        h, w = self.image_shape[1:]
        for lv, lc in enumerate(self.levels[1:], start=1):
            require(lc.n_scales == 1 and lc.squeeze is None,
                    f"level {lv}: n_scales and squeeze are for the base flow (level 0) only")
            step = 2 ** (len(self.levels) - lv)  # Haar steps from the full image down to this level's details
            require(lc.crop is None or (lc.crop <= min(h, w) and lc.crop % step == 0),
                    f"level {lv}: crop {lc.crop} must be at most the image size and divisible by {step}")
            if lc.crop is None or self.wavelet == "haar":
                continue
            require(self.boundary == "periodic",
                    f"level {lv}: crops with the {self.wavelet} wavelet need \"boundary\": \"periodic\" (its "
                    f"coefficients reach beyond their block: a crop is cut from the periodic image with a margin)")
            margin = crop_margin(self.wavelet, len(self.levels) - lv)
            require(lc.crop + 2 * margin < min(h, w),
                    f"level {lv}: crop {lc.crop} and its margin of {margin} pixels on each side cover the image; "
                    f"train level {lv} on whole images")


@dataclass(frozen=True)
class CNFLevelConfig(Config):
    """Per-level settings of an MRCNF level; None takes the model-wide value of :class:`MRCNFConfig`."""

    hidden: tuple[int, ...] | None = None
    cnf_blocks: int | None = None
    actnorm: bool | None = None
    end_time: float | None = None
    steer: float | None = None

    def __post_init__(self) -> None:
        require(self.hidden is None or (len(self.hidden) > 0 and min(self.hidden) > 0),
                f"hidden must list positive widths, got {self.hidden}")
        require(self.hidden is None or len(self.hidden) <= LIMITS["cond_depth"],
                f"hidden lists at most {LIMITS['cond_depth']} layers, got {len(self.hidden or ())}")
        check_positive(cnf_blocks=self.cnf_blocks, end_time=self.end_time)
        check_limits(cnf_blocks=self.cnf_blocks, hidden=max(self.hidden) if self.hidden else None)
        require(self.steer is None or self.steer >= 0, f"steer must be at least 0, got {self.steer}")


@dataclass(frozen=True)
class MRCNFConfig(_Pyramid, Config):
    """MRCNF (Voleti et al. 2021): the wavelet factorisation with ``cnf_blocks`` CNFs per level (each behind
    an ActNorm when ``actnorm``), a logit transform of strength ``alpha`` before the base, and the RNODE
    penalties ``kinetic`` and ``jacobian`` (Finlay et al. 2020) in training. ``wavelet``: as for Wavelet Flow, in
    the ``unimodular`` normalisation (log-det 0 for every wavelet)."""

    image_shape: tuple[int, int, int]
    n_bits: int = 8
    base_size: BaseSize = 8
    convention: str = "unimodular"
    alpha: float = 0.05
    cnf_blocks: int = 1
    actnorm: bool = True
    hidden: tuple[int, ...] = (32, 32, 32)
    end_time: float = 1.0
    steer: float = 0.0
    divergence: str = "hutchinson"
    noise: str = "gaussian"
    kinetic: float = 0.01
    jacobian: float = 0.01
    train_solver: SolverConfig = DEFAULT_TRAIN_SOLVER
    eval_solver: SolverConfig = DEFAULT_EVAL_SOLVER
    adjoint: bool = False
    levels: tuple[CNFLevelConfig, ...] = ()
    display_max: int | None = None
    wavelet: str = "haar"
    noise_std: float = 0.0

    def __post_init__(self) -> None:
        _check_data(self.image_shape, self.n_bits, self.display_max)
        _check_noise(self.noise_std)
        require(self.convention == "unimodular", "MRCNF uses the unimodular Haar step (Voleti et al. 2021)")
        check_choice("wavelet", self.wavelet, WAVELETS)
        require(0 <= self.alpha < 0.5, f"alpha must be in [0, 0.5), got {self.alpha}")
        require(self.kinetic >= 0 and self.jacobian >= 0, "the RNODE weights kinetic and jacobian must be >= 0")
        check_choice("divergence", self.divergence, ("hutchinson", "exact"))
        check_choice("noise", self.noise, ("gaussian", "rademacher"))
        CNFLevelConfig(self.hidden, self.cnf_blocks, self.actnorm, self.end_time, self.steer)  # checks them
        self._fill_levels(CNFLevelConfig)
        for lv in range(len(self.levels)):
            s = self.level_settings(lv)
            require(s.steer < s.end_time, f"level {lv}: steer {s.steer} must be less than end_time {s.end_time}")

    def level_settings(self, level: int) -> CNFLevelConfig:
        """``levels[level]`` with every None replaced by the model-wide value."""
        lc = self.levels[level]
        return CNFLevelConfig(**{
            f.name: getattr(self, f.name) if getattr(lc, f.name) is None else getattr(lc, f.name)
            for f in dataclasses.fields(CNFLevelConfig)
        })


def _data(image_shape: Any, n_bits: int, overrides: dict[str, Any]) -> tuple[tuple[int, int, int], int]:
    """(C, H, W) and the bit depth: the arguments, or ``image_shape``/``n_bits`` given in ``overrides``."""
    require("base" not in overrides, "unknown key 'base' in config: the base flow's entry is now levels[0] "
                                     "(config entries are indexed by model level)")
    require("n_levels" not in overrides, "unknown key 'n_levels' in config: Glow's scales are now n_scales "
                                         "('level' means a wavelet level)")
    shape = overrides.pop("image_shape", tuple(int(v) for v in image_shape))
    return convert(tuple[int, int, int], shape, "config image_shape"), convert(
        int, overrides.pop("n_bits", int(n_bits)), "config n_bits")


def _halved(h: int, w: int, stop: int) -> BaseSize:
    """The base size: halve (h, w) while both are even and the smaller is above ``stop``."""
    while h % 2 == 0 and w % 2 == 0 and min(h, w) > stop:
        h, w = h // 2, w // 2
    return h if h == w else (h, w)


def _no_preset(preset: str | None) -> None:
    require(preset is None, "presets exist for waveletflow and mrcnf models only")


def glow_config(image_shape: Any, n_bits: int = 8, /, preset: str | None = None, **overrides: Any) -> GlowConfig:
    """A Glow config: the defaults, with as many scales as the image size allows (at most 3).

    >>> glow_config((3, 28, 28), n_steps=4).n_scales
    2
    """
    _no_preset(preset)
    shape, bits = _data(image_shape, n_bits, overrides)
    h, w, scales = shape[1], shape[2], 0
    while scales < 3 and h % 2 == 0 and w % 2 == 0 and min(h, w) >= 4:
        scales, h, w = scales + 1, h // 2, w // 2
    return GlowConfig.from_dict({"n_scales": max(scales, 1), **overrides, "image_shape": shape, "n_bits": bits})


def glow_residual_config(image_shape: Any, n_bits: int = 8, /, preset: str | None = None,
                         **overrides: Any) -> GlowConfig:
    """:func:`glow_config` with Wavelet Flow's coupling (residual network, tanh scale), the model type
    ``glow-residual``.

    >>> c = glow_residual_config((1, 8, 8)); c.coupling_net, c.coupling
    ('residual', 'affine')
    """
    return glow_config(image_shape, n_bits, preset, **{"coupling_net": "residual", "coupling": "affine", **overrides})


def waveletflow_config(image_shape: Any, n_bits: int = 8, /, preset: str | None = None,
                       **overrides: Any) -> WaveletFlowConfig:
    """A Wavelet Flow config: the preset named or the one for the image size (see :data:`PRESETS`), else
    a 1×1 base where the size is a power of two (the smallest size reachable by halving otherwise) with
    8 steps of width 64 per level. ``overrides`` replace top-level keys; a ``levels`` list replaces all
    entries (each filled with the :class:`GlowLevelConfig` defaults).

    >>> waveletflow_config((1, 24, 24)).base_size, len(waveletflow_config((1, 16, 12)).levels)
    (3, 3)
    """
    shape, bits = _data(image_shape, n_bits, overrides)
    name = preset or f"{shape[1]}x{shape[2]}"
    if name in PRESETS:
        defaults = copy.deepcopy(PRESETS[name])
    elif preset is not None:
        raise UserInputError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    else:
        defaults = {"base_size": _halved(shape[1], shape[2], 1)}
    if preset is not None and "levels" not in overrides and "base_size" not in overrides:
        side = int(preset.split("x")[0])
        require((shape[1], shape[2]) == (side, side),
                f"preset {preset} is for {side}×{side} images, these are {shape[1]}×{shape[2]} (--image-size {side} "
                f"resizes them, --crop {side} cuts crops of larger ones; or use the preset of their size)")
    if "base_size" in overrides:
        base = convert(BaseSize, overrides["base_size"], "config base_size")
        if "levels" in defaults and _hw(base) != _hw(defaults["base_size"]):
            log.info("preset %s is for a base of %s; default levels are used for base %s", name,
                     defaults["base_size"], base)
            del defaults["levels"]
    return WaveletFlowConfig.from_dict({**defaults, **overrides, "image_shape": shape, "n_bits": bits})


def mrcnf_config(image_shape: Any, n_bits: int = 8, /, preset: str | None = None, **overrides: Any) -> MRCNFConfig:
    """An MRCNF config: base 8×8 where the size is a power of two (as in Voleti et al. 2021), 7×7 for 28×28, and
    the preset's settings (:data:`MRCNF_PRESETS`; default ``mrcnf-cpu``).

    Examples:
        >>> [mrcnf_config((3, s, s)).base_size for s in (28, 32, 64)]
        [7, 8, 8]
        >>> c = mrcnf_config((1, 28, 28), preset="mrcnf-published"); c.hidden, c.cnf_blocks, c.alpha
        ((64, 64, 64), 2, 1e-06)
    """
    if preset is not None and preset not in MRCNF_PRESETS:
        raise UserInputError(f"unknown MRCNF preset {preset!r}; choose one of {', '.join(MRCNF_PRESETS)}")
    shape, bits = _data(image_shape, n_bits, overrides)
    defaults = {"base_size": _halved(shape[1], shape[2], 8), **copy.deepcopy(MRCNF_PRESETS[preset or "mrcnf-cpu"])}
    if preset == "mrcnf-published":
        defaults["alpha"] = 1e-6 if shape[0] == 1 else 0.05
    return MRCNFConfig.from_dict({**defaults, **overrides, "image_shape": shape, "n_bits": bits})
