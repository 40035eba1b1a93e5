"""The scale an image is seen at: one rule for training, validation, evaluation (whole image and
slide windows), prediction, top-two and the export check, so a model is scored and used at the
scale it was trained at.

`short_side` (the default, MMSegmentation's `keep_ratio` scale): the image's short side becomes
the base length (`base_short_side`, by default the variant's shorter side), its long side at most
`LONG_SIDE_LIMIT` times that. `fit`: the whole image fits inside the variant's size. Training
multiplies this base scale by a random ratio from `scale_range`, then crops the variant's size.

Pure arithmetic on sizes; kept free of torch and OpenCV.
"""

from __future__ import annotations

import math

from cocoseg.training.variants import Variant

LONG_SIDE_LIMIT = 4  # 2048 for a 512 base: MMSegmentation's (2048, 512) scale


def base_length(variant: Variant) -> int:
    """The short side `short_side` scales to: `base_short_side`, or the variant's shorter side."""
    return int(variant.base_short_side or min(variant.image_size))


def base_scale(height: int, width: int, variant: Variant) -> float:
    """The factor that takes an image of this size to the variant's base scale (ratio 1)."""
    if variant.resize == "fit":
        return min(variant.image_size[0] / height, variant.image_size[1] / width)
    base = base_length(variant)
    return min(base / min(height, width), LONG_SIDE_LIMIT * base / max(height, width))


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(height, width) after scaling by `scale`, at least one pixel each (albumentations' rounding)."""
    return max(1, round(height * scale)), max(1, round(width * scale))


def inference_size(height: int, width: int, variant: Variant) -> tuple[int, int]:
    """(height, width) an image is scaled to before the network sees it whole."""
    return scaled_size(height, width, base_scale(height, width, variant))


def padded_size(height: int, width: int, variant: Variant, divisor: int) -> tuple[int, int]:
    """The input a scaled image is padded to (bottom-right): the variant's size under `fit` (every
    image of a split then has one shape, as training's crops did), else the next multiple of the
    architecture's divisor, so a photo is not padded to a square it was never trained on."""
    if variant.resize == "fit":
        return max(height, variant.image_size[0]), max(width, variant.image_size[1])
    return math.ceil(height / divisor) * divisor, math.ceil(width / divisor) * divisor


def training_longest_side(height: int, width: int, variant: Variant) -> int:
    """The longest side training can use of an image this size: its base scale at the largest
    ratio (what a reduced JPEG decode must keep)."""
    return math.ceil(max(height, width) * base_scale(height, width, variant) * variant.scale_range[1])
