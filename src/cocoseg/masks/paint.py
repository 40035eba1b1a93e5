"""COCO annotations of one image -> one multi-class uint8 mask.

Semantics (README, "Mask semantics"): non-crowd instances are painted largest decoded area
first, so small objects stay on top; where a split has several files, the first file's
annotations are painted over the next one's (list things before stuff: the thing wins, as in
COCO-Stuff). Crowd regions, regions of category ids no file declares and of the ignore
categories become 255 on pixels no instance covers; an annotation whose geometry is corrupt
makes its bbox 255, because we know something is there but not which pixels. A pixel nothing
covers gets `fill`: 0 (background) or 255 (unlabelled, where the data set labels every pixel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils

from cocoseg.shared.labels import IGNORE


@dataclass
class Decoded:
    runs: np.ndarray | None  # column-major run lengths, zeros first; None: nothing to paint
    fault: str | None = None  # geometry we cannot trust: its bbox becomes "ignore"
    note: str | None = None  # harmless repair worth recording in the manifest


def rle_string_counts(counts: str | bytes) -> np.ndarray:
    """Decode COCO's compressed RLE string (maskApi.c rleFrString), vectorised.

    Each value is 5-bit groups, low first, 0x20 meaning "more follows", 0x10 in the last group
    the sign; from the fourth value on, each is stored as a difference to the value two back.
    pycocotools' own decoder does not check that runs add up to height*width and writes past its
    buffer when they do not; we check, and we need the runs anyway (see `_covered`).
    """
    data = counts.encode() if isinstance(counts, str) else bytes(counts)
    if not data:
        return np.zeros(0, dtype=np.int64)
    c = np.frombuffer(data, dtype=np.uint8) - np.uint8(48)  # below '0' wraps to >= 208
    if c.max() >= 64:
        raise ValueError("invalid character in RLE string")
    ends = np.flatnonzero(c < 32)  # no 0x20 "more" bit: the value's last group
    if len(ends) == 0 or ends[-1] != len(c) - 1:
        raise ValueError("truncated RLE string")
    if len(ends) == len(c):  # every value a single group: the common case for small masks
        values = (c & 0x0F).astype(np.int64) - (c & 0x10).astype(np.int64)
    else:
        starts = np.empty_like(ends)
        starts[0], starts[1:] = 0, ends[:-1] + 1
        groups = ends - starts + 1
        if groups.max() > 12:
            raise ValueError("RLE value too long")
        shift = 5 * (np.arange(len(c)) - np.repeat(starts, groups))
        values = np.add.reduceat((c & 0x1F).astype(np.int64) << shift, starts)
        negative = (c[ends] & 0x10) != 0
        values[negative] -= np.left_shift(1, 5 * groups[negative])
    runs = values.copy()
    runs[3::2] = np.cumsum(values[1::2])[1:]
    runs[4::2] = np.cumsum(values[2::2])[1:]
    return runs


def _coordinates(part) -> np.ndarray | None:
    """A polygon part as float64 coordinates, or None unless it is a list of finite numbers."""
    if not isinstance(part, list) or not set(map(type, part)) <= {int, float}:  # bool is not int here
        return None
    try:
        coords = np.array(part, dtype=np.float64)
    except OverflowError:
        return None
    return coords if np.isfinite(coords).all() else None


def decode_segmentation(segmentation, height: int, width: int) -> Decoded:
    """Turn any COCO segmentation into run lengths, as pycocotools' annToRLE would, after checks.

    Checks that pycocotools skips: a 4-number polygon is taken for a bbox by frPyObjects, an odd
    coordinate count silently drops a number, and RLE runs that do not add up overflow a buffer.
    """
    if isinstance(segmentation, list):
        parts, dropped = [], 0
        for part in segmentation:
            coords = _coordinates(part)
            if coords is None:
                return Decoded(None, fault="polygon is not a list of finite numbers")
            if len(coords) % 2:
                return Decoded(None, fault=f"polygon with an odd number of coordinates ({len(coords)})")
            if len(coords) < 6:
                dropped += 1  # fewer than 3 points: no area
            else:
                parts.append(coords.tolist())
        note = f"dropped {dropped} polygon part(s) with fewer than 3 points" if dropped else None
        if not parts:
            return Decoded(None, note=note or "empty segmentation")
        rle = mask_utils.merge(mask_utils.frPyObjects(parts, height, width))
        return Decoded(rle_string_counts(rle["counts"]), note=note)

    if isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        size, counts = segmentation["size"], segmentation["counts"]
        if size != [height, width]:
            return Decoded(None, fault=f"RLE size {size} differs from the image's [{height}, {width}]")
        if isinstance(counts, list):
            if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
                return Decoded(None, fault="RLE counts are not non-negative integers")
            runs = np.asarray(counts, dtype=np.int64)
        elif isinstance(counts, (str, bytes)):
            try:
                runs = rle_string_counts(counts)
            except ValueError as e:
                return Decoded(None, fault=f"corrupt RLE string: {e}")
            if (runs < 0).any():
                return Decoded(None, fault="corrupt RLE string: negative run")
        else:
            return Decoded(None, fault="RLE counts are neither a list nor a string")
        if runs.sum() != height * width:
            return Decoded(None, fault=f"RLE runs cover {runs.sum()} pixels, not {height * width}")
        return Decoded(runs)

    return Decoded(None, fault="segmentation is neither polygons nor RLE")


def bbox_slices(bbox, height: int, width: int) -> tuple[slice, slice] | None:
    """The pixel rows and columns a COCO [x, y, w, h] box touches, clipped to the image."""
    coords = _coordinates(bbox)
    if coords is None or len(coords) != 4:
        return None
    x, y, w, h = coords.tolist()
    if w <= 0 or h <= 0:
        return None
    x0, y0 = max(0, math.floor(x)), max(0, math.floor(y))
    x1, y1 = min(width, math.ceil(x + w)), min(height, math.ceil(y + h))
    if x0 >= x1 or y0 >= y1:
        return None
    return slice(y0, y1), slice(x0, x1)


_ALTERNATING = np.arange(4096) % 2 == 1


def _alternating(n: int) -> np.ndarray:
    """False, True, False, ...: the value of each run (COCO RLE starts with a zeros run)."""
    return _ALTERNATING[:n] if n <= len(_ALTERNATING) else np.arange(n) % 2 == 1


def _covered(runs: np.ndarray, height: int, width: int) -> tuple[slice, slice, np.ndarray] | None:
    """The pixels the runs cover, as a box and a boolean view of that box (None: no pixel).

    Expanding runs with np.repeat is about 25x faster than pycocotools' decode, which fills
    and then copies a full frame; restricting painting to the box makes its cost follow the
    object's size, not the image's.
    """
    ends = np.cumsum(runs)
    on = np.flatnonzero(runs[1::2]) * 2 + 1
    if len(on) == 0:
        return None
    starts, stops = ends[on] - runs[on], ends[on] - 1
    x0, x1 = starts[0] // height, stops[-1] // height + 1
    if x1 - x0 == 1 or (starts // height == stops // height).all():
        y0, y1 = (starts % height).min(), (stops % height).max() + 1
    else:
        y0, y1 = 0, height
    pixels = np.repeat(_alternating(len(runs)), runs).reshape(width, height)
    return slice(y0, y1), slice(x0, x1), pixels[x0:x1, y0:y1].T


class UnusableImage(Exception):
    """The image cannot get a trustworthy mask; the message is its skip reason."""


def paint_mask(annotations: list[dict], height: int, width: int, label_of: dict[int, int], declared: set[int],
               layers: list[int] | None = None, fill: int = 0,
               ignored: frozenset[int] = frozenset()) -> tuple[np.ndarray, list[str]]:
    """Paint one image's annotations; returns the mask and notes for the manifest. `layers`
    gives each annotation's file position (0 on top); `ignored` are category ids painted as 255."""
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
        if decoded.runs is None:
            continue
        if not (isinstance(category, int) and category in declared):
            notes.append(f"annotation {ann_id}: unknown category id {category!r}; its region is set to ignore (255)")
            ignore_regions.append(decoded.runs)
        elif category in ignored:
            ignore_regions.append(decoded.runs)
        elif category not in label_of:
            continue  # a declared category left out of the config's class list: unlabelled
        elif ann.get("iscrowd"):
            ignore_regions.append(decoded.runs)
        else:
            area = int(decoded.runs[1::2].sum())
            tie = (0, ann_id) if isinstance(ann_id, int) else (1, index)
            layer = layers[index] if layers else 0
            instances.append((-layer, -area, tie, label_of[category], decoded.runs))

    mask = np.full((height, width), fill, dtype=np.uint8)
    for *_, label, runs in sorted(instances, key=lambda item: item[:3]):
        if (box := _covered(runs, height, width)) is not None:
            rows, cols, covered = box
            np.copyto(mask[rows, cols], label, where=covered)
    for runs in ignore_regions:
        if (box := _covered(runs, height, width)) is not None:
            rows, cols, covered = box
            region = mask[rows, cols]
            np.copyto(region, IGNORE, where=covered & (region == fill))  # unpainted pixels only
    for rows, cols in ignore_boxes:
        mask[rows, cols] = IGNORE
    return mask, notes
