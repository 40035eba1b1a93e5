"""Reading image pixels for training, evaluation and prediction: any mode as 8-bit RGB, JPEGs
through OpenCV, large JPEGs reduced while decoding.

Kept apart from `images` (checking files), so the mask stage, which never decodes, runs
without OpenCV.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from cocoseg.shared.errors import InputError
from cocoseg.shared.image_checks import pixel_fault


def to_rgb(im: Image.Image) -> np.ndarray:
    """Any mode as 8-bit RGB: 16- and 32-bit grey scaled to 0-255 (not clipped), L/RGBA/CMYK/P converted.

    EXIF orientation is not applied, as in COCO's annotations.
    """
    if _is_deep(im.mode):
        values = np.asarray(im, dtype=np.float64)
        peak = values.max(initial=0)
        top = 65535.0 if im.mode.startswith("I;16") or 255 < peak <= 65535 else max(255.0, peak)
        grey = np.clip(np.round(values * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(im.convert("RGB"))


def _is_deep(mode: str) -> bool:
    return mode.startswith("I") or mode == "F"


def scaling_note(mode: str) -> str:
    """What `to_rgb` does to an image of this mode beyond a plain conversion, for manifests."""
    return f"{mode} pixels scaled to 0-255" if _is_deep(mode) else ""


def decode_jpeg(source: Path | io.BytesIO) -> np.ndarray | None:
    """RGB pixels of a colour or grey JPEG through OpenCV, or None where it refuses the file.

    OpenCV and Pillow both use libjpeg-turbo: the pixels are the same (checked on COCO's colour
    and grey files) and decoding takes about 12% less time, which counts in loader workers. EXIF
    orientation is ignored, as in COCO's annotations.
    """
    # None for truncated or malformed files: Pillow then decides, with its own message
    data = np.frombuffer(source.getbuffer(), np.uint8) if isinstance(source, io.BytesIO) else np.fromfile(source, np.uint8)
    return cv2.imdecode(data, cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)


def is_reduced(width: int, height: int, reduce_to: int | None) -> bool:
    """Whether an image of this size is read reduced for a use that needs `reduce_to` pixels on
    its longest side: only at twice that or more, where DCT scaling can halve it."""
    return bool(reduce_to) and max(width, height) >= 2 * reduce_to


def read_rgb(path: Path | io.BytesIO, reduce_to: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """An image file (or its bytes) as RGB uint8 (HWC, contiguous), and the file's full (width, height).

    With `reduce_to`, a JPEG whose longest side is at least twice that decodes at 1/2, 1/4 or
    1/8 scale (libjpeg's DCT scaling), its longest side still >= `reduce_to`: images far larger
    than the training crops then cost less than a full decode.
    InputError when the image is above the pixel limit.
    """
    with Image.open(path) as im:
        size = im.size
        fault = pixel_fault(*size)
        if fault:
            raise InputError(fault if isinstance(path, io.BytesIO) else f"{path}: {fault}")
        if im.format == "JPEG" and is_reduced(*size, reduce_to):
            scale = reduce_to / max(size)
            im.draft(im.mode, (math.ceil(size[0] * scale), math.ceil(size[1] * scale)))
        elif im.format == "JPEG" and im.mode in ("RGB", "L"):  # CMYK: Pillow's conversion
            pixels = decode_jpeg(path)
            if pixels is not None:
                return pixels, size
        return to_rgb(im), size


def load_rgb(path: Path) -> np.ndarray:
    """An image file as RGB uint8 (HWC, contiguous), at full size; see `read_rgb`."""
    return read_rgb(path)[0]
