"""Checking image files before we trust them, cheaply enough for COCO-sized splits."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

Image.MAX_IMAGE_PIXELS = 20_000 * 20_000  # larger files are refused as bombs, not decoded


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
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.size != (width, height):
                    return f"image is {im.width}x{im.height} but the JSON says {width}x{height}"
                if im.format == "JPEG":
                    if _ends_with_eoi(path):
                        return None
                    im.draft(im.mode, (max(1, width // 8), max(1, height // 8)))
                im.load()
    except UnidentifiedImageError:
        return "image unreadable: not a known image format"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        return f"image unreadable: {e}"
    return None
