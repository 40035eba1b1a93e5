"""Grayscale 8-bit PNG encoding for label masks.

Written out because masks need none of what a general encoder spends time on: with no
per-row filter search and zlib's run-length strategy, encoding takes about half of
Pillow's time at level 1 (benchmarks/bench_masks.py), and the bytes depend only on the mask,
the level and zlib.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def encode_mask_png(mask: np.ndarray, level: int = 1) -> bytes:
    """A uint8 2-D array as a PNG (colour type 0, bit depth 8, filter 0 on every row)."""
    if mask.dtype != np.uint8 or mask.ndim != 2:
        raise ValueError(f"expected a 2-D uint8 mask, got {mask.dtype} {mask.shape}")
    height, width = mask.shape
    rows = np.zeros((height, width + 1), dtype=np.uint8)  # leading 0: filter type "none"
    rows[:, 1:] = mask
    compressor = zlib.compressobj(level, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    data = compressor.compress(rows.tobytes()) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")
