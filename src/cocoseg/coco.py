"""Reading a COCO instance file into per-image records, with every file-level fault caught.

Faults that make the whole file unusable raise `InputError` (one line, naming the file);
faults of single image entries become a skip reason on that image, so that one bad entry
never costs the good images around it.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Sequence

from .common import MAX_CLASSES, InputError
from .files import safe_relative



@dataclass
class Split:
    """One COCO file, ready to be sharded: images in a fixed order with their annotations."""

    labels: list[tuple[int, int, str]]  # (label, category id, name)
    category_ids: list[int]  # every id the file declares, selected as a class or not
    images: list[dict]  # {"id", "file_name", "width", "height", "mask", "annotations", "skip"}
    orphan_annotations: int = 0  # annotations whose image id names no usable image
    notes: list[str] = field(default_factory=list)


def read_json(path: str | os.PathLike) -> dict:
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text: {e.reason}") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a COCO file: the top level is not a JSON object")
    return data


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def label_map(path, categories, classes: Sequence[int | str] | None = None) -> list[tuple[int, int, str]]:
    """Label = 1 + index of the category among the sorted ids, or among `classes` when given."""
    names: dict[int, str] = {}
    for i, cat in enumerate(categories):
        if not isinstance(cat, dict) or not _is_int(cat.get("id")):
            raise InputError(f"{path}: categories[{i}] has no integer 'id'")
        if cat["id"] in names:
            raise InputError(f"{path}: category id {cat['id']} is declared twice")
        names[cat["id"]] = str(cat.get("name", cat["id"]))
    if classes is None:
        chosen = sorted(names)
    else:
        by_name = {name: cid for cid, name in names.items()}
        chosen = []
        for wanted in classes:
            cid = wanted if _is_int(wanted) else by_name.get(wanted)
            if cid not in names:
                raise InputError(f"{path}: class {wanted!r} from the config is not among its categories")
            if cid in chosen:
                raise InputError(f"{path}: class {wanted!r} is listed twice in the config")
            chosen.append(cid)
    if len(chosen) > MAX_CLASSES:
        raise InputError(f"{path}: {len(chosen)} classes do not fit in uint8 masks (at most {MAX_CLASSES})")
    return [(i + 1, cid, names[cid]) for i, cid in enumerate(chosen)]


def _image_fault(entry) -> str | None:
    if not isinstance(entry, dict):
        return "image entry is not a JSON object"
    if not _is_int(entry.get("id")):
        return "image entry has no integer 'id'"
    for key in ("width", "height"):
        if not _is_int(entry.get(key)) or entry[key] <= 0:
            return f"invalid {key} in JSON: {entry.get(key)!r}"
    if safe_relative(entry.get("file_name")) is None:
        return f"unsafe or empty file_name {entry.get('file_name')!r} (absolute, '..' or backslash)"
    return None


def _mask_name(file_name: str) -> str:
    return str(PurePosixPath(file_name).with_suffix(".png"))


def load_split(path: str | os.PathLike, classes=None, max_images: int | None = None) -> Split:
    """Parse and check one COCO file; images come sorted by id so that shards are reproducible."""
    data = read_json(path)
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise InputError(f"{path}: not a COCO instance file: key '{key}' is missing")
        if not isinstance(data[key], list):
            raise InputError(f"{path}: '{key}' is not a list")
    if not data["categories"]:
        raise InputError(f"{path}: no categories: a file without categories cannot give class masks")
    labels = label_map(path, data["categories"], classes)
    category_ids = sorted(c["id"] for c in data["categories"])

    entries = data["images"]
    id_count = Counter(e["id"] for e in entries if isinstance(e, dict) and _is_int(e.get("id")))
    # Entries with a usable id first, by id; the rest keep their file order after them.
    order = sorted(range(len(entries)), key=lambda i: (0, entries[i]["id"], i)
                   if isinstance(entries[i], dict) and _is_int(entries[i].get("id")) else (1, 0, i))
    if max_images is not None:
        order = order[:max_images]

    images, mask_owner = [], {}
    for i in order:
        entry = entries[i]
        skip = _image_fault(entry)
        if skip is None and id_count[entry["id"]] > 1:
            skip = f"duplicate image id {entry['id']}: its annotations cannot be attributed"
        mask = None
        if skip is None:
            mask = _mask_name(entry["file_name"])
            if mask in mask_owner:
                skip = f"mask name {mask} is already used by image {mask_owner[mask]}"
                mask = None
            else:
                mask_owner[mask] = entry["id"]
        record = entry if isinstance(entry, dict) else {}
        images.append({
            "id": record.get("id", ""),
            "file_name": record.get("file_name", ""),
            "width": record.get("width", ""),
            "height": record.get("height", ""),
            "mask": mask,
            "annotations": [],
            "skip": skip,
        })

    usable = {img["id"]: img for img in images if img["skip"] is None}
    orphans = 0
    for ann in data["annotations"]:
        image_id = ann.get("image_id") if isinstance(ann, dict) else None
        image = usable.get(image_id) if _is_int(image_id) else None
        if image is None:
            orphans += 1
        else:
            image["annotations"].append(ann)
    if max_images is not None:  # annotations of images cut by --max-images are not orphans
        kept = {img["id"] for img in images}
        cut = {image_id for image_id in id_count if image_id not in kept}
        orphans -= sum(1 for a in data["annotations"] if isinstance(a, dict) and _is_int(a.get("image_id"))
                       and a["image_id"] in cut)
    split = Split(labels=labels, category_ids=category_ids, images=images, orphan_annotations=orphans)
    if orphans:
        split.notes.append(f"{orphans} annotation(s) name no usable image id and were not used")
    return split

