"""Wavelet Flow (Yu et al. 2020): a multi-scale Glow on the base image and a conditional Glow per Haar level."""

from __future__ import annotations

from waveletflow.flows import MultiScaleGlow, flow_stack
from waveletflow.layers import EncodedCondition, InvertibleLayer
from waveletflow.models.config import GlowLevelConfig, WaveletFlowConfig
from waveletflow.models.wavelet import WaveletModel


def detail_flow(channels: int, lc: GlowLevelConfig, lu: bool = True) -> InvertibleLayer:
    """The conditional Glow of one detail level of an image with ``channels`` channels."""
    cond = channels + lc.cond_width
    flow = flow_stack(3 * channels, lc.n_steps, cond, lc.width, lc.n_blocks, lc.coupling, lu,
                      checkpoint=lc.checkpoint)
    return EncodedCondition(flow, channels, lc.cond_width, lc.cond_depth, lc.cond_attention) if lc.cond_width else flow


def wavelet_flow(config: WaveletFlowConfig) -> WaveletModel:
    """Build a Wavelet Flow from its config: ``levels[0]`` the base flow, ``levels[l]`` the Glow of level l
    (K steps of ActNorm → 1×1 conv → coupling on the 3C detail channels, the low-pass concatenated to every
    coupling network's input; Yu et al. 2020, §3).

    >>> from waveletflow.models.config import waveletflow_config
    >>> wavelet_flow(waveletflow_config((1, 8, 8), n_bits=5)).level_dims
    [1, 3, 12, 48]
    """
    c = config.image_shape[0]
    bh, bw = config.base_hw
    base = config.levels[0]
    squeeze = base.squeeze if base.squeeze is not None else (min(bh, bw) > 1 and bh % 2 == 0 and bw % 2 == 0)
    base_flow = MultiScaleGlow((c, bh, bw), n_scales=base.n_scales, n_steps=base.n_steps, width=base.width,
                               n_blocks=base.n_blocks, coupling=base.coupling, lu=config.lu, squeeze=squeeze)
    details = [detail_flow(c, lc, config.lu) for lc in config.levels[1:]]
    return WaveletModel(base_flow, details, config.convention, image_shape=config.image_shape, n_bits=config.n_bits,
                        crops=[lc.crop for lc in config.levels], wavelet=config.wavelet, boundary=config.boundary,
                        model_type="waveletflow", config=config)
