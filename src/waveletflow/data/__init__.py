"""Datasets as uint8 NHWC arrays, dequantisation and augmentation."""

from waveletflow.data.datasets import DATASET_NAMES, Crops, ImageDataset, ImageFolder, load_dataset
from waveletflow.data.transforms import (
    block_means, dequantize, dequantize_means, periodic_pad, quantize, random_crop, random_flip, reduce_bits, to_tensor,
)

__all__ = [
    "DATASET_NAMES",
    "Crops",
    "ImageDataset",
    "ImageFolder",
    "block_means",
    "dequantize",
    "dequantize_means",
    "load_dataset",
    "quantize",
    "periodic_pad",
    "random_crop",
    "random_flip",
    "reduce_bits",
    "to_tensor",
]
