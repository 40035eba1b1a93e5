"""Checking image files before we trust them, cheaply enough for COCO-sized splits."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .common import InputError

Image.MAX_IMAGE_PIXELS = None  # the limit below applies instead, before any decoding
DEFAULT_MAX_PIXELS = 100_000_000  # 10000 x 10000; an RGB decode of that is 300 MB
MAX_PIXELS_VARIABLE = "COCOSEG_MAX_PIXELS"  # set by the workflow from the config's `max_pixels`


def max_pixels() -> int:
    """The one pixel limit of every stage that decodes images."""
    return int(os.environ.get(MAX_PIXELS_VARIABLE) or DEFAULT_MAX_PIXELS)


def pixel_fault(width: int, height: int) -> str | None:
    limit = max_pixels()
    if width * height > limit:
        return f"{width * height} pixels, above the limit of {limit} ({MAX_PIXELS_VARIABLE} or config max_pixels)"
    return None


def to_rgb(im: Image.Image) -> np.ndarray:
    """Any mode as 8-bit RGB: 16- and 32-bit grey scaled to 0-255 (not clipped), L/RGBA/CMYK/P converted.

    EXIF orientation is not applied, as in COCO's annotations.
    """
    if im.mode.startswith("I") or im.mode == "F":
        values = np.asarray(im, dtype=np.float64)
        peak = values.max(initial=0)
        top = 65535.0 if im.mode.startswith("I;16") or 255 < peak <= 65535 else max(255.0, peak)
        grey = np.clip(np.round(values * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(im.convert("RGB"))


def decode_jpeg(path: Path) -> np.ndarray | None:
    """RGB pixels of a colour or grey JPEG through OpenCV, or None where it refuses the file.

    OpenCV and Pillow both use libjpeg-turbo: the pixels are the same (checked on COCO's colour
    and grey files) and decoding takes about 12% less time, which counts in loader workers. EXIF
    orientation is ignored, as in COCO's annotations. Imported here so that the mask stage,
    which never decodes, starts without OpenCV.
    """
    import cv2

    # None for truncated or malformed files: Pillow then decides, with its own message
    return cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)


def is_reduced(width: int, height: int, reduce_to: int | None) -> bool:
    """Whether an image of this size is read reduced for a use that needs `reduce_to` pixels on
    its longest side: only at twice that or more, where DCT scaling can halve it."""
    return bool(reduce_to) and max(width, height) >= 2 * reduce_to


def read_rgb(path: Path, reduce_to: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """An image file as RGB uint8 (HWC, contiguous), and the file's full (width, height).

    With `reduce_to`, a JPEG whose longest side is at least twice that decodes at 1/2, 1/4 or
    1/8 scale (libjpeg's DCT scaling), its longest side still >= `reduce_to`: images far larger
    than the training crops then cost less than a full decode.
    InputError when the image is above the pixel limit.
    """
    with Image.open(path) as im:
        size = im.size
        fault = pixel_fault(*size)
        if fault:
            raise InputError(f"{path}: {fault}")
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


def _ends_with_eoi(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-2, os.SEEK_END)
        return f.read(2) == b"\xff\xd9"


def image_fault(path: Path, width: int, height: int) -> str | None:
    """Why `path` cannot be used with a JSON entry of this size, or None if it can.

    A JPEG that ends in its end-of-image marker, with a header Pillow parses, is trusted
    without decoding (a full check cost more than painting its mask). Any other JPEG is
    decoded at 1/8 scale (libjpeg's DCT scaling), which still reads every byte, so truncated
    files fail while files with trailing data after the marker pass. Other formats are decoded.
    """
    if not path.is_file():
        return "image file missing"
    try:
        with Image.open(path) as im:
            if im.size != (width, height):
                return f"image is {im.width}x{im.height} but the JSON says {width}x{height}"
            if fault := pixel_fault(width, height):
                return f"image too large: {fault}"
            if im.format == "JPEG":
                if _ends_with_eoi(path):
                    return None
                im.draft(im.mode, (max(1, width // 8), max(1, height // 8)))
            im.load()
    except UnidentifiedImageError:
        return "image unreadable: not a known image format"
    except (OSError, SyntaxError, ValueError) as e:
        return f"image unreadable: {e}"
    return None
