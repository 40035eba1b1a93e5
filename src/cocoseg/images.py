"""Checking image files before we trust them, cheaply enough for COCO-sized splits."""

from __future__ import annotations

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
    """RGB pixels of a JPEG through torchvision, or None where it refuses the file.

    Both it and Pillow use libjpeg-turbo: the pixels are the same (checked on COCO's colour,
    grey and CMYK files) and decoding takes about 15% less time, which counts in loader workers.
    Imported here so that the mask stage, which never decodes, does not load torch.
    """
    from torchvision.io import ImageReadMode, read_file
    from torchvision.io import decode_jpeg as torchvision_decode_jpeg

    try:
        return torchvision_decode_jpeg(read_file(str(path)), mode=ImageReadMode.RGB).permute(1, 2, 0).numpy()
    except RuntimeError:  # truncated or malformed: Pillow decides, with its own message
        return None


def load_rgb(path: Path) -> np.ndarray:
    """An image file as RGB uint8 (HWC, contiguous); InputError when it is above the pixel limit."""
    with Image.open(path) as im:
        fault = pixel_fault(*im.size)
        if fault:
            raise InputError(f"{path}: {fault}")
        if im.format == "JPEG" and im.mode in ("RGB", "L", "CMYK"):
            pixels = decode_jpeg(path)
            if pixels is not None:
                return pixels
        return to_rgb(im)


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
