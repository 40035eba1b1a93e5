"""Checking image files before we trust them, cheaply enough for COCO-sized splits, and the one
pixel limit of every stage that decodes them (reading pixels is `image_decoding`'s)."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, UnidentifiedImageError

Image.MAX_IMAGE_PIXELS = None  # the limit below applies instead, before any decoding
DEFAULT_MAX_PIXELS = 100_000_000  # 10000 x 10000; an RGB decode of that is 300 MB
MAX_PIXELS_VARIABLE = "COCOSEG_MAX_PIXELS"  # set by the workflow from the config's `max_pixels`


def max_pixels() -> int:
    """The one pixel limit of every stage that decodes images."""
    return int(os.environ.get(MAX_PIXELS_VARIABLE) or DEFAULT_MAX_PIXELS)


def pixel_fault(width: int, height: int) -> str | None:
    limit = max_pixels()
    if width * height > limit:
        return (f"image too large: {width * height} pixels, above the limit of {limit} "
                f"({MAX_PIXELS_VARIABLE} or config max_pixels)")
    return None


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
                return fault
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
