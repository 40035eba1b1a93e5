"""COCO panoptic annotations of one image -> one multi-class uint8 mask.

The panoptic format (cocodataset/panopticapi) stores one RGB PNG per image whose colour is a
segment id, id = R + 256 G + 256^2 B, and one JSON annotation per image that names the PNG and
lists its segments (`segments_info`: id, category_id, iscrowd). Id 0 is VOID: no category, so
it gets `fill` like any pixel no annotation covers. Segments never overlap, so no painting order
is needed. Crowd segments, ignore categories, unknown categories and PNG colours the JSON does
not list become 255; faults that leave the whole PNG untrustworthy make the image unusable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cocoseg.masks.paint import UnusableImage
from cocoseg.shared.files import is_integer, safe_relative
from cocoseg.shared.labels import IGNORE

VOID = 0


def the_annotation(annotations: list) -> dict:
    """An image's one panoptic annotation; none, several or a malformed one make it unusable."""
    if len(annotations) != 1:
        raise UnusableImage("no panoptic annotation names this image" if not annotations
                            else f"{len(annotations)} panoptic annotations name this image")
    annotation = annotations[0]
    if not isinstance(annotation.get("segments_info"), list):
        raise UnusableImage("panoptic annotation has no 'segments_info' list")
    if safe_relative(annotation.get("file_name")) is None:
        raise UnusableImage(f"panoptic annotation has an unsafe or empty file_name {annotation.get('file_name')!r}")
    return annotation


def segment_ids(path: Path, height: int, width: int) -> np.ndarray:
    """The segment id of every pixel of a panoptic PNG (int64), after checking it matches the image."""
    if not path.is_file():
        raise UnusableImage(f"panoptic PNG {path} missing")
    try:
        with Image.open(path) as im:
            if im.size != (width, height):
                raise UnusableImage(f"panoptic PNG is {im.width}x{im.height} but the JSON says {width}x{height}")
            if im.mode not in ("RGB", "RGBA"):
                raise UnusableImage(f"panoptic PNG is {im.mode}, not RGB")
            rgb = np.asarray(im.convert("RGB"), dtype=np.int64)
    except UnidentifiedImageError:
        raise UnusableImage(f"panoptic PNG {path} unreadable: not a known image format") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise UnusableImage(f"panoptic PNG {path} unreadable: {e}") from None
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def segment_labels(segments: list, label_of: dict[int, int], declared: set[int],
                   ignored: frozenset[int], fill: int) -> tuple[dict[int, int], list[str]]:
    """The label of each segment id listed in the JSON (VOID: `fill`), and notes on faulty entries."""
    values, notes = {VOID: fill}, []
    for index, segment in enumerate(segments):
        segment_id = segment.get("id") if isinstance(segment, dict) else None
        if not is_integer(segment_id) or segment_id == VOID:
            notes.append(f"segments_info[{index}] has no integer non-zero 'id'; its pixels are set to ignore (255)")
            continue
        category = segment.get("category_id")
        if not (is_integer(category) and category in declared):
            notes.append(f"segment {segment_id}: unknown category id {category!r}; its region is set to ignore (255)")
            values[segment_id] = IGNORE
        elif category in ignored:
            values[segment_id] = IGNORE
        elif category not in label_of:
            values[segment_id] = fill  # a category left out of the config's class list: unlabelled
        else:
            values[segment_id] = IGNORE if segment.get("iscrowd") else label_of[category]
    return values, notes


def paint_panoptic(annotations: list, png_dir: Path, height: int, width: int, label_of: dict[int, int],
                   declared: set[int], fill: int = 0,
                   ignored: frozenset[int] = frozenset()) -> tuple[np.ndarray, list[str]]:
    """Paint one image from its panoptic PNG; returns the mask and notes for the manifest."""
    annotation = the_annotation(annotations)
    ids = segment_ids(Path(png_dir) / annotation["file_name"], height, width)
    values, notes = segment_labels(annotation["segments_info"], label_of, declared, ignored, fill)
    present, inverse = np.unique(ids, return_inverse=True)
    unlisted = [int(i) for i in present if int(i) not in values]
    if unlisted:
        pixels = int(np.isin(ids, unlisted).sum())
        notes.append(f"{pixels} pixel(s) of PNG segment id(s) {', '.join(map(str, unlisted[:5]))}"
                     f"{' ...' if len(unlisted) > 5 else ''} absent from the JSON are set to ignore (255)")
    absent = sorted(set(values) - {VOID} - set(present.tolist()))
    if absent:
        notes.append(f"segment id(s) {', '.join(map(str, absent[:5]))}{' ...' if len(absent) > 5 else ''} "
                     "of the JSON have no pixel in the PNG")
    lookup = np.array([values.get(int(i), IGNORE) for i in present], dtype=np.uint8)
    return lookup[inverse.reshape(ids.shape)], notes
