"""The one registry of model types: each name with its config class, its default config and its builder."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from waveletflow.errors import UserInputError
from waveletflow.models.base import FlowModel
from waveletflow.models.config import (GlowConfig, MRCNFConfig, WaveletFlowConfig, glow_config, glow_residual_config,
                                       mrcnf_config, waveletflow_config)
from waveletflow.models.glow import Glow
from waveletflow.models.mrcnf import mrcnf
from waveletflow.models.waveletflow import wavelet_flow


@dataclass(frozen=True)
class ModelType:
    """A model type: ``default_config(image_shape, n_bits, preset, **overrides)`` and ``build(config)``."""

    name: str
    config_class: type
    default_config: Callable[..., Any]
    build: Callable[[Any], FlowModel]
    summary: str


#: the model type of a new run when none is named
DEFAULT_MODEL_TYPE = "waveletflow"

MODEL_TYPES: dict[str, ModelType] = {
    t.name: t
    for t in (
        ModelType("waveletflow", WaveletFlowConfig, waveletflow_config, wavelet_flow,
                  "Wavelet Flow: a Glow per Haar level (Yu et al. 2020)"),
        ModelType("glow", GlowConfig, glow_config, Glow,
                  "multi-scale Glow on the whole image, as published (Kingma & Dhariwal 2018)"),
        ModelType("glow-residual", GlowConfig, glow_residual_config, lambda c: Glow(c, "glow-residual"),
                  "multi-scale Glow with Wavelet Flow's residual coupling network and tanh scale"),
        ModelType("mrcnf", MRCNFConfig, mrcnf_config, mrcnf,
                  "a continuous normalizing flow per Haar level (Voleti et al. 2021)"),
    )
}


def model_type(name: str) -> ModelType:
    """The registered model type ``name``; a one-line error naming the choices otherwise."""
    if name not in MODEL_TYPES:
        raise UserInputError(f"unknown model type {name!r}; choose one of {', '.join(MODEL_TYPES)}")
    return MODEL_TYPES[name]


def default_config(name: str, image_shape: Sequence[int], n_bits: int, overrides: Mapping[str, Any] | None = None,
                   preset: str | None = None) -> Any:
    """The default config of model type ``name`` for the data, with ``overrides`` (a partial or a whole config as
    a dict) on top; unknown keys, wrong types and a shape that differs from the data's are refused."""
    config = model_type(name).default_config(tuple(image_shape), n_bits, preset, **dict(overrides or {}))
    if tuple(config.image_shape) != tuple(image_shape):
        raise UserInputError(f"the config is for images of shape {tuple(config.image_shape)}, "
                             f"the data has {tuple(image_shape)}")
    return config


def build_model(name: str, config: Any, device: str | None = None) -> FlowModel:
    """A new model of type ``name`` from its config (a config object, or a whole config as a dict).

    ``device="meta"`` builds it without allocating its weights (to check a config or count its parameters).
    """
    t = model_type(name)
    if isinstance(config, Mapping):
        config = t.config_class.from_dict(config)
    if not isinstance(config, t.config_class):
        raise UserInputError(f"a {name} model needs a {t.config_class.__name__}, got {type(config).__name__}")
    if device is None:
        model = t.build(config)
    else:
        with torch.device(device):
            model = t.build(config)
    model.model_type = t.name  # the registry names what it builds
    return model
