"""The named model configurations (``--preset``): Wavelet Flow's by image size, MRCNF's, and where each one's numbers
come from."""

from __future__ import annotations

from typing import Any


#: Wavelet Flow presets in the spirit of the released configurations (Yu et al. 2020), scaled down for CPUs.
#: ``levels`` lists the base flow first, then one entry per detail level, coarse to fine. ``28x28`` has the
#: conditioning network on its detail levels (it won on MNIST in the benchmark of an earlier release); the finest
#: levels of ``28x28`` and ``32x32`` have the width that won the long-budget trials of
#: :mod:`waveletflow.models.capacity` (``--time-budget`` fits that width to a shorter budget). ``28x28-released``
#: and ``32x32-released`` are the presets of earlier releases, for the figures measured with them (``32x32`` is
#: ``32x32-released`` again: its released width won the trials).
_SMALL_BASE = {"n_steps": 4, "width": 32, "n_blocks": 1, "n_scales": 1}
_RELEASED_32 = [_SMALL_BASE, {"n_steps": 4, "width": 32}, {"n_steps": 4, "width": 48},
                {"n_steps": 6, "width": 64}, {"n_steps": 8, "width": 64}, {"n_steps": 8, "width": 96}]
PRESETS: dict[str, dict[str, Any]] = {
    "8x8": {"base_size": 1, "levels": [
        _SMALL_BASE, {"n_steps": 4, "width": 32}, {"n_steps": 6, "width": 48}, {"n_steps": 8, "width": 64}]},
    "28x28": {"base_size": 7, "levels": [
        {"n_steps": 8, "width": 64, "n_blocks": 1, "n_scales": 1},
        {"n_steps": 8, "width": 64, "cond_width": 32}, {"n_steps": 8, "width": 64, "cond_width": 32}]},
    "32x32": {"base_size": 1, "levels": _RELEASED_32},
    "28x28-released": {"base_size": 7, "levels": [
        {"n_steps": 8, "width": 64, "n_blocks": 1, "n_scales": 1},
        {"n_steps": 8, "width": 64}, {"n_steps": 8, "width": 64}]},
    "32x32-released": {"base_size": 1, "levels": _RELEASED_32},
}
# 64×64: one more level than the released 32×32, trained on 32×32 crops (patch-wise training, Yu et al. 2020)
PRESETS["64x64"] = {"base_size": 1, "levels": [*_RELEASED_32, {"n_steps": 8, "width": 96, "crop": 32}]}

#: where each preset's numbers come from: the measurement (its command) or the configuration it scales down
PRESET_SOURCES: dict[str, str] = {
    "8x8": "the released configurations (Yu et al. 2020), scaled down for CPUs",
    "28x28": "the conditioning network: python -m benchmarks.run --full (README, The conditioning network); "
             "the finest level's width: python -m benchmarks.capacity (benchmarks/results/capacity.json)",
    "32x32": "the released configurations, scaled down for CPUs; the finest level's width confirmed by python -m "
             "benchmarks.capacity (benchmarks/results/capacity.json)",
    "28x28-released": "the 28x28 preset of earlier releases",
    "32x32-released": "the 32x32 preset of earlier releases (the released configurations, scaled down for CPUs)",
    "64x64": "the 32x32-released preset and one level on 32x32 crops (patch-wise training, Yu et al. 2020)",
    **{f"{side}x{side}": "the released high-resolution configurations (8, 8, then 16 steps per level), scaled "
                         "down for CPUs, with patch-wise training of the large levels" for side in (128, 256, 512, 1024)},
}

#: the largest detail patch a high-resolution level trains on (patch-wise training, Yu et al. 2020)
HIGHRES_PATCH = 32


def _highres(side: int) -> dict[str, Any]:
    """A preset for ``side``×``side`` images (a power of two, at least 128) shaped like the released
    high-resolution configurations (8, 8, then 16 steps per level at widths 64…128), scaled for CPUs: 4–8 steps
    of width 32–64, and every level whose details are larger than :data:`HIGHRES_PATCH` trains on random crops
    of the image whose details are that size (crop factors 2, 4, … up to 16 at 1024 px)."""
    n = side.bit_length() - 1  # detail levels: 1×1 → side
    levels: list[dict[str, Any]] = [dict(_SMALL_BASE), {"n_steps": 4, "width": 32}, {"n_steps": 4, "width": 48}]
    for lv in range(3, n + 1):
        details = 2 ** (lv - 1)  # the side of this level's detail bands on whole images
        entry: dict[str, Any] = {"n_steps": 6 if lv == 3 else 8, "width": 64}
        if details > HIGHRES_PATCH:
            entry["crop"] = side * HIGHRES_PATCH // details
        levels.append(entry)
    return {"base_size": 1, "levels": levels}


for _side in (128, 256, 512, 1024):
    PRESETS[f"{_side}x{_side}"] = _highres(_side)


#: MRCNF presets: ``mrcnf-cpu`` (the default: one CNF of hidden widths 32-32-32 per level, 63 k parameters for
#: MNIST, sized for a CPU) and ``mrcnf-published`` (Voleti et al. 2021: two CNF blocks of 64-64-64 per level,
#: logit α = 1e-6 for one-channel images such as MNIST and 0.05 otherwise; 0.47 M parameters for MNIST)
MRCNF_PRESETS: dict[str, dict[str, Any]] = {
    "mrcnf-cpu": {},
    "mrcnf-published": {"hidden": [64, 64, 64], "cnf_blocks": 2},
}
