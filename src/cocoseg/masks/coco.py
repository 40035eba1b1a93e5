"""Reading a COCO instance file into per-image records, with every file-level fault caught.

Faults that make the whole file unusable raise `InputError` (one line, naming the file);
faults of single image entries become a skip reason on that image, so that one bad entry
never costs the good images around it.

The file is read as a stream (`coco_reader`), and each annotation is kept pickled until its shard
job paints it: peak memory stays near the file's size, not eight times it.
"""

from __future__ import annotations

import os
import pickle
from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Sequence

from cocoseg.masks.coco_reader import NotStreamable, StreamedFile, WholeFile
from cocoseg.shared.errors import InputError
from cocoseg.shared.files import safe_relative
from cocoseg.shared.labels import MAX_CLASSES


@dataclass
class Split:
    """One COCO file, ready to be sharded: images in a fixed order with their annotations."""

    labels: list[tuple[int, int, str]]  # (label, category id, name)
    category_ids: list[int]  # every id the file declares, selected as a class or not
    images: list[dict]  # {"id", "file_name", "width", "height", "mask", "annotations" (pickled), "skip"}
    orphan_annotations: int = 0  # annotations whose image id names no usable image
    notes: list[str] = field(default_factory=list)


def _array(source: StreamedFile | WholeFile, key: str, checked_before: tuple[str, ...] = ()) -> list:
    """The whole top-level array `key`. Where it gives no items, the keys a reader checks first
    (`checked_before`) and then it are checked, so a file's first fault is the one reported."""
    items = list(source.items(key))
    if not items:
        for name in (*checked_before, key):
            source.check_array(name)
    return items


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
    try:
        return _split_of(StreamedFile(path), classes, max_images)
    except NotStreamable:
        split = _split_of(WholeFile(path), classes, max_images)
        split.notes.append("read whole, not streamed: the file holds NaN or Infinity, which only Python's "
                           "json reader accepts")
        return split


def _split_of(source: StreamedFile | WholeFile, classes, max_images: int | None) -> Split:
    images, cut = _image_records(_array(source, "images"), max_images)  # the raw entries are freed here
    categories = _array(source, "categories", checked_before=("annotations",))
    if not categories:
        raise InputError(f"{source.path}: no categories: a file without categories cannot give class masks")
    split = Split(labels=label_map(source.path, categories, classes),
                  category_ids=sorted(c["id"] for c in categories), images=images)
    split.orphan_annotations = _attach_annotations(source, images, cut)
    if split.orphan_annotations:
        split.notes.append(f"{split.orphan_annotations} annotation(s) name no usable image id and were not used")
    return split


def _image_records(entries: list, max_images: int | None) -> tuple[list[dict], set[int]]:
    """One record per image entry, usable entries first by id (the rest in file order), each with
    its skip reason or None; and the ids `max_images` cut (their annotations are not orphans)."""
    id_count = Counter(e["id"] for e in entries if isinstance(e, dict) and _is_int(e.get("id")))
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
    return images, set(id_count) - {img["id"] for img in images}


def _attach_annotations(source: StreamedFile | WholeFile, images: list[dict], cut: set[int]) -> int:
    """Each annotation, pickled, onto its usable image in file order; returns the orphans."""
    usable = {img["id"]: img for img in images if img["skip"] is None}
    orphans, seen = 0, 0
    for ann in source.items("annotations"):
        seen += 1
        image_id = ann.get("image_id") if isinstance(ann, dict) else None
        image = usable.get(image_id) if _is_int(image_id) else None
        if image is not None:
            image["annotations"].append(pickle.dumps(ann, protocol=pickle.HIGHEST_PROTOCOL))
        elif not (_is_int(image_id) and image_id in cut):
            orphans += 1
    if not seen:
        source.check_array("annotations")
    return orphans


def annotations_of(record: dict) -> list:
    """An image record's annotations, as the file holds them."""
    return [pickle.loads(blob) for blob in record["annotations"]]
