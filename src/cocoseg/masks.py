"""COCO annotations of one image -> one multi-class uint8 mask.

Semantics (README, "Mask semantics"): non-crowd instances are painted largest decoded area
first, so small objects stay on top; crowd regions, and regions of category ids the file does
not declare, become 255 on pixels no instance covers; an annotation whose geometry is corrupt
makes its bbox 255, because we know something is there but not which pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils

from .coco import IGNORE


@dataclass
class Decoded:
    rle: dict | None  # None: nothing to paint (zero area, or a fault)
    fault: str | None = None  # geometry we cannot trust: its bbox becomes "ignore"
    note: str | None = None  # harmless repair worth recording in the manifest


def rle_string_counts(counts: str | bytes) -> list[int]:
    """Decode COCO's compressed RLE string (the LEB128-like scheme of maskApi.c rleFrString).

    pycocotools decodes without checking that the runs add up to height*width, and writes past
    its buffer when they do not; checking here keeps a corrupt crowd region from corrupting memory.
    """
    data = counts.encode() if isinstance(counts, str) else counts
    runs: list[int] = []
    pos = 0
    while pos < len(data):
        value, shift, more = 0, 0, True
        while more:
            if pos >= len(data):
                raise ValueError("truncated RLE string")
            c = data[pos] - 48
            if not 0 <= c < 64:
                raise ValueError("invalid character in RLE string")
            value |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            pos += 1
            shift += 5
            if not more and c & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def _finite_numbers(values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def decode_segmentation(segmentation, height: int, width: int) -> Decoded:
    """Turn any COCO segmentation into one RLE the way pycocotools' annToRLE does, after checks.

    Checks that pycocotools skips: a 4-number polygon is taken for a bbox by frPyObjects, an odd
    coordinate count silently drops a number, and RLE runs that do not add up overflow a buffer.
    """
    if isinstance(segmentation, list):
        parts, dropped = [], 0
        for part in segmentation:
            if not isinstance(part, list) or not _finite_numbers(part):
                return Decoded(None, fault="polygon is not a list of finite numbers")
            if len(part) % 2:
                return Decoded(None, fault=f"polygon with an odd number of coordinates ({len(part)})")
            if len(part) < 6:
                dropped += 1  # fewer than 3 points: no area
            else:
                parts.append([float(v) for v in part])
        note = f"dropped {dropped} polygon part(s) with fewer than 3 points" if dropped else None
        if not parts:
            return Decoded(None, note=note or "empty segmentation")
        return Decoded(mask_utils.merge(mask_utils.frPyObjects(parts, height, width)), note=note)

    if isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        size, counts = segmentation["size"], segmentation["counts"]
        if list(size) != [height, width]:
            return Decoded(None, fault=f"RLE size {size} differs from the image's [{height}, {width}]")
        if isinstance(counts, list):
            if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
                return Decoded(None, fault="RLE counts are not non-negative integers")
            runs = counts
        elif isinstance(counts, (str, bytes)):
            try:
                runs = rle_string_counts(counts)
            except ValueError as e:
                return Decoded(None, fault=f"corrupt RLE string: {e}")
            if any(r < 0 for r in runs):
                return Decoded(None, fault="corrupt RLE string: negative run")
        else:
            return Decoded(None, fault="RLE counts are neither a list nor a string")
        if sum(runs) != height * width:
            return Decoded(None, fault=f"RLE runs cover {sum(runs)} pixels, not {height * width}")
        if isinstance(counts, list):
            return Decoded(mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width))
        raw = counts.encode() if isinstance(counts, str) else counts
        return Decoded({"size": [height, width], "counts": raw})

    return Decoded(None, fault="segmentation is neither polygons nor RLE")


def bbox_slices(bbox, height: int, width: int) -> tuple[slice, slice] | None:
    """The pixel rows and columns a COCO [x, y, w, h] box touches, clipped to the image."""
    if not isinstance(bbox, list) or len(bbox) != 4 or not _finite_numbers(bbox):
        return None
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        return None
    x0, y0 = max(0, math.floor(x)), max(0, math.floor(y))
    x1, y1 = min(width, math.ceil(x + w)), min(height, math.ceil(y + h))
    if x0 >= x1 or y0 >= y1:
        return None
    return slice(y0, y1), slice(x0, x1)


class UnusableImage(Exception):
    """The image cannot get a trustworthy mask; the message is its skip reason."""


def paint_mask(annotations: list[dict], height: int, width: int,
               label_of: dict[int, int], declared: set[int]) -> tuple[np.ndarray, list[str]]:
    """Paint one image's annotations; returns the mask and notes for the manifest."""
    instances, ignore_regions, ignore_boxes, notes = [], [], [], []
    for index, ann in enumerate(annotations):
        ann_id = ann.get("id", f"#{index}")
        decoded = decode_segmentation(ann.get("segmentation"), height, width)
        if decoded.note:
            notes.append(f"annotation {ann_id}: {decoded.note}")
        category = ann.get("category_id")
        if decoded.fault:
            box = bbox_slices(ann.get("bbox"), height, width)
            if box is None:
                raise UnusableImage(f"annotation {ann_id}: {decoded.fault}, and no valid bbox to mark as ignore")
            notes.append(f"annotation {ann_id}: {decoded.fault}; its bbox is set to ignore (255)")
            ignore_boxes.append(box)
            continue
        if decoded.rle is None:
            continue
        if category not in declared:
            notes.append(f"annotation {ann_id}: unknown category id {category!r}; its region is set to ignore (255)")
            ignore_regions.append(decoded.rle)
        elif category not in label_of:
            continue  # a declared category left out of the config's class list: background
        elif ann.get("iscrowd"):
            ignore_regions.append(decoded.rle)
        else:
            area = int(mask_utils.area(decoded.rle))
            tie = (0, ann_id) if isinstance(ann_id, int) else (1, index)
            instances.append((-area, tie, label_of[category], decoded.rle))

    mask = np.zeros((height, width), dtype=np.uint8)
    for _, _, label, rle in sorted(instances, key=lambda item: item[:2]):
        mask[mask_utils.decode(rle).astype(bool)] = label
    for rle in ignore_regions:
        mask[mask_utils.decode(rle).astype(bool) & (mask == 0)] = IGNORE
    for rows, cols in ignore_boxes:
        mask[rows, cols] = IGNORE
    return mask, notes
