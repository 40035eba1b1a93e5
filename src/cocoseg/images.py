"""Checking image files before we trust them, cheaply enough for COCO-sized splits."""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

Image.MAX_IMAGE_PIXELS = 20_000 * 20_000  # larger files are refused as bombs, not decoded


def image_fault(path: Path, width: int, height: int) -> str | None:
    """Why `path` cannot be used with a JSON entry of this size, or None if it can.

    JPEGs are decoded at 1/8 scale (libjpeg's DCT scaling): every byte is still read, so a
    truncated or corrupt file fails here, at a fraction of a full decode's cost.
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
                    im.draft(im.mode, (max(1, width // 8), max(1, height // 8)))
                im.load()
    except UnidentifiedImageError:
        return "image unreadable: not a known image format"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        return f"image unreadable: {e}"
    return None
