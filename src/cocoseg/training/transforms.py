"""What an image goes through before the network: training's scale, crop and colour recipe
(`TrainAugment`, the scale recipe of `scaling`), the inference input every stage shares
(`inference_input`), and the ImageNet normalisation of training, evaluation and exported models.
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations calls home at import

import albumentations as A
import cv2
import numpy as np
import torch

from cocoseg.shared.labels import IGNORE
from cocoseg.training.scaling import base_scale, inference_size, padded_size, scaled_size
from cocoseg.training.variants import Variant

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet, as the encoders expect

# Loader workers already fill the job's CPUs: an OpenCV thread pool in each would oversubscribe
# them. Set here, before any worker is forked: changing it inside a forked worker can deadlock.
cv2.setNumThreads(1)


# albumentations' Normalize arithmetic, in float32: (pixel - 255 mean) * 1 / (255 std).
_SHIFT = torch.from_numpy(np.array(MEAN, dtype=np.float32) * 255).view(1, 3, 1, 1)
_SCALE = torch.from_numpy(np.reciprocal(np.array(STD, dtype=np.float32) * 255)).view(1, 3, 1, 1)


def normalize_pixels(images: torch.Tensor) -> torch.Tensor:
    """float NCHW images in 0-255 -> normalised with ImageNet's mean and std, on their own device:
    the one normalisation of training, evaluation and an exported model.

    The same float32 operations as albumentations' Normalize, so the numbers are bit for bit
    those of a loader that normalises on the CPU.
    """
    return (images - _SHIFT.to(images.device)) * _SCALE.to(images.device)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC images -> float32 NCHW, normalised (`normalize_pixels`).

    Loaders hand over HWC as decoded (no transposing copy in the worker); the result is
    channels-last in memory, as the models run.
    """
    return normalize_pixels(images.permute(0, 3, 1, 2).float())


def as_tensor(image: np.ndarray) -> torch.Tensor:
    """HWC uint8 array -> contiguous HWC uint8 tensor, which batches with a plain copy."""
    return torch.from_numpy(np.ascontiguousarray(image))


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` at `size` (height, width), bilinear; as it is when it already has that size."""
    if image.shape[:2] == tuple(size):
        return image
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def resize_pair(image: np.ndarray, mask: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Image (bilinear) and mask (nearest label) at `size` (height, width)."""
    if mask.shape[:2] != tuple(size):
        mask = cv2.resize(mask, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return resize_image(image, size), mask


def pad_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` padded with 0 to at least `size`, bottom-right."""
    return _pad(image, size, 0, centred=False)


def pad_pair(image: np.ndarray, mask: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Image padded with 0 and mask with ignore to at least `size`, bottom-right: padded pixels are
    never counted, and the padding is cropped back off with a slice."""
    return _pad(image, size, 0, centred=False), _pad(mask, size, IGNORE, centred=False)


def _pad(array: np.ndarray, size: tuple[int, int], fill: int, centred: bool) -> np.ndarray:
    extra_h, extra_w = max(0, size[0] - array.shape[0]), max(0, size[1] - array.shape[1])
    if not extra_h and not extra_w:
        return array
    top, left = (extra_h // 2, extra_w // 2) if centred else (0, 0)
    border = (top, extra_h - top, left, extra_w - left)
    return cv2.copyMakeBorder(array, *border, cv2.BORDER_CONSTANT, value=(fill,) * 3 if array.ndim == 3 else fill)


CROP_TRIES = 10  # MMSegmentation's RandomCrop: crops drawn before one with cat_max_ratio is taken as is
SHARE_STRIDE = 4  # label shares are counted on every 4th pixel each way: 1/16 of the work, the same verdict


def crop_origin(mask: np.ndarray, size: tuple[int, int], max_share: float, rng: np.random.Generator
                ) -> tuple[int, int]:
    """(top, left) of a random `size` crop of `mask` in which no label covers more than `max_share`
    of the labelled (non-ignore) pixels and at least two labels are present: up to `CROP_TRIES`
    draws, then the last one (MMSegmentation's `cat_max_ratio`). A share of 1 takes any crop.
    Shares are counted on a `SHARE_STRIDE` grid: a crop's label shares, not its outlines, decide."""
    height, width = size
    for _ in range(CROP_TRIES):
        top = int(rng.integers(0, mask.shape[0] - height + 1))
        left = int(rng.integers(0, mask.shape[1] - width + 1))
        if max_share >= 1:
            break
        crop = mask[top: top + height: SHARE_STRIDE, left: left + width: SHARE_STRIDE]
        counts = np.bincount(crop[crop != IGNORE])
        counts = counts[counts > 0]
        if len(counts) > 1 and counts.max() / counts.sum() < max_share:
            break
    return top, left


class TrainAugment:
    """The training recipe: scale to the base scale (`scaling.base_scale`) times a random ratio
    from `scale_range`, pad with ignore only where the scaled image is smaller than the crop, crop
    the variant's size where no label dominates (`crop_origin`), flip half the time, jitter colour.

    The crop is chosen on the scaled mask; the image is resampled straight into the crop (one
    affine warp, the same bilinear sampling as resizing the whole image and cropping it), so a
    scale of 2 costs no more than a scale of 1. Every draw comes from the generator passed in, so
    a sample's augmentation is a function of its key (`sample_generator`): the same whatever the
    number of loader workers.
    """

    def __init__(self, variant: Variant):
        self.variant = variant
        self.jitter = A.Compose([A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5)])

    def __call__(self, image: np.ndarray, mask: np.ndarray, original: tuple[int, int],
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """`original`: the file's (height, width), which the scale refers to (`image` may be a reduced decode)."""
        crop_h, crop_w = self.variant.image_size
        ratio = rng.uniform(*self.variant.scale_range)
        scaled = scaled_size(*original, base_scale(*original, self.variant) * ratio)
        canvas = (max(scaled[0], crop_h), max(scaled[1], crop_w))
        shift = ((canvas[0] - scaled[0]) // 2, (canvas[1] - scaled[1]) // 2)  # the scaled image, centred
        labels = cv2.resize(mask, scaled[::-1], interpolation=cv2.INTER_NEAREST)
        labels = _pad(labels, canvas, IGNORE, centred=True)
        top, left = crop_origin(labels, (crop_h, crop_w), self.variant.crop_max_share, rng)
        mask = labels[top: top + crop_h, left: left + crop_w]
        image = warp_into_crop(image, scaled, (shift[0] - top, shift[1] - left), (crop_h, crop_w))
        if rng.random() < 0.5:
            image, mask = image[:, ::-1], mask[:, ::-1]
        self.jitter.set_random_seed(int(rng.integers(2**32)))
        return self.jitter(image=np.ascontiguousarray(image))["image"], np.ascontiguousarray(mask)


def warp_into_crop(image: np.ndarray, scaled: tuple[int, int], offset: tuple[int, int],
                   size: tuple[int, int]) -> np.ndarray:
    """The `size` window of `image` resized to `scaled` (height, width) and placed at `offset`
    (top, left) within the window, in one bilinear warp: pixel centres map as `cv2.resize` maps
    them; outside the scaled image, 0."""
    scale_y, scale_x = scaled[0] / image.shape[0], scaled[1] / image.shape[1]
    matrix = np.array([[scale_x, 0, 0.5 * scale_x - 0.5 + offset[1]],
                       [0, scale_y, 0.5 * scale_y - 0.5 + offset[0]]])
    return cv2.warpAffine(image, matrix, (size[1], size[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def inference_input(image: np.ndarray, variant: Variant, divisor: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The image as the network sees it whole (`scaling.inference_size`, padded bottom-right to
    `scaling.padded_size`), and the (height, width) of the image within it."""
    size = inference_size(*image.shape[:2], variant)
    return pad_image(resize_image(image, size), padded_size(*size, variant, divisor)), size


def inference_pair(image: np.ndarray, mask: np.ndarray, variant: Variant,
                   divisor: int) -> tuple[np.ndarray, np.ndarray]:
    """Image and mask as `inference_input` gives the image (the mask padded with ignore): what
    validation scores during training."""
    size = inference_size(*image.shape[:2], variant)
    image, mask = resize_pair(image, mask, size)
    return pad_pair(image, mask, padded_size(*size, variant, divisor))
