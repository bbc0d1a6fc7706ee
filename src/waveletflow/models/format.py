"""The ``model.json`` format: its version, and the files of earlier versions read as this one."""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from waveletflow.config import require
from waveletflow.models.config import (
    CNFLevelConfig, GlowConfig, GlowLevelConfig, MRCNFConfig, WaveletFlowConfig,
)

log = logging.getLogger("waveletflow")

#: Version of the ``model.json`` layout written by this code; see :func:`upgrade_model_meta`.
MODEL_FORMAT = 3


def _rename(d: dict[str, Any], old: str, new: str) -> None:
    if old in d:
        d.setdefault(new, d.pop(old))


def upgrade_model_meta(meta: Any) -> dict[str, Any]:
    """Model metadata ``{"version", "model_type", "config"}`` in the current format (a new dict).

    Format 1 (no ``version``) is upgraded: Glow's ``n_levels`` becomes ``n_scales`` (and its coupling, the only
    one then, Wavelet Flow's residual network); the separate ``base``
    entry of Wavelet Flow and MRCNF becomes ``levels[0]`` (its ``n_levels`` becomes ``n_scales``); a stored
    ``preset`` is dropped. Formats 1 and 2 knew the Haar wavelet only and
    noiseless images: a wavelet model's ``wavelet`` is ``haar`` and every model's ``noise_std`` 0 (format 3 names
    them). Raises :class:`~waveletflow.errors.UserInputError` for newer or unreadable metadata.

    >>> upgrade_model_meta({"model_type": "glow", "config": {"image_shape": [1, 8, 8], "n_levels": 2}})["config"]
    {'image_shape': [1, 8, 8], 'n_scales': 2, 'coupling': 'affine', 'coupling_net': 'residual', 'noise_std': 0.0}
    """
    require(isinstance(meta, Mapping), "unreadable model metadata: not a JSON object")
    version = meta.get("version", 1)
    require(type(version) is int and version >= 1, f"unreadable model metadata: bad format version {version!r}")
    require(version <= MODEL_FORMAT, f"this model was written by a newer waveletflow (model format {version}); "
                                     "upgrade waveletflow")
    model_type, config = meta.get("model_type"), meta.get("config")
    require(isinstance(model_type, str) and isinstance(config, Mapping),
            "unreadable model metadata: it needs a model_type string and a config object")
    config = copy.deepcopy(dict(config))
    if version == 1 and model_type in _FORMAT1_CLASSES:
        config.pop("preset", None)
        if model_type == "glow":  # format 1 had only Wavelet Flow's coupling
            _rename(config, "n_levels", "n_scales")
            config.setdefault("coupling", "affine")
            config.setdefault("coupling_net", "residual")
        elif model_type in ("waveletflow", "mrcnf"):
            base, levels = config.pop("base", {}), config.get("levels", [])
            require(isinstance(base, Mapping) and isinstance(levels, list),
                    "unreadable model metadata: base must be an object and levels a list")
            base = dict(base)
            _rename(base, "n_levels", "n_scales")
            config["levels"] = [base, *levels]
        _drop_ignored(config, *_FORMAT1_CLASSES[model_type])
    if version < 3 and model_type in ("waveletflow", "mrcnf"):
        config.setdefault("wavelet", "haar")
    if version < 3 and model_type == "waveletflow":
        config.setdefault("boundary", "symmetric")
    if version < 3 and model_type in (*_FORMAT1_CLASSES, "glow-residual"):
        config.setdefault("noise_std", 0.0)
    return {"version": MODEL_FORMAT, "model_type": model_type, "config": config}


def _drop_ignored(config: dict[str, Any], cls: type, level_cls: type | None) -> None:
    """Format 1 ignored keys it did not know (typos, another model type's settings): drop them, with a note."""
    dropped = _drop_unknown(config, cls, "")
    if level_cls is not None and isinstance(config.get("levels"), list):
        for i, entry in enumerate(config["levels"]):
            if isinstance(entry, dict):
                dropped += _drop_unknown(entry, level_cls, f"levels[{i}].")
    if dropped:
        log.info("model.json of format 1: ignoring %s, which that format did not use", ", ".join(dropped))


def _drop_unknown(d: dict[str, Any], cls: type, prefix: str) -> list[str]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in d if k not in names]
    for k in unknown:
        del d[k]
    return [prefix + k for k in unknown]


#: format-1 model types and their config classes (model and per level)
_FORMAT1_CLASSES: dict[str, tuple[type, type | None]] = {
    "glow": (GlowConfig, None), "waveletflow": (WaveletFlowConfig, GlowLevelConfig), "mrcnf": (MRCNFConfig, CNFLevelConfig),
}
