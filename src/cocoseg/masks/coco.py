"""Reading a split's COCO files (one, or several merged by id) into per-image records, with
every file-level fault caught.

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
from cocoseg.masks.label_map import LabelRules, category_names, label_map
from cocoseg.shared.errors import InputError
from cocoseg.shared.files import is_integer, safe_relative


@dataclass
class Split:
    """One split's COCO files, ready to be sharded: images in a fixed order with their annotations."""

    labels: list[tuple[int, int, str]]  # (label, category id, name)
    category_ids: list[int]  # every id the files declare, selected as a class or not
    images: list[dict]  # {"id", "file_name", "width", "height", "mask", "annotations" (pickled), "layers", "skip"}
    orphan_annotations: int = 0  # annotations whose image id names no usable image
    notes: list[str] = field(default_factory=list)


@dataclass
class _File:
    """What one COCO file holds: its image entries, categories and annotations by image id."""

    path: str | os.PathLike
    entries: list
    categories: list
    annotations: dict  # image id (or None when it has none) -> pickled annotations in file order
    notes: list[str] = field(default_factory=list)


def _array(source: StreamedFile | WholeFile, key: str, checked_before: tuple[str, ...] = ()) -> list:
    """The whole top-level array `key`. Where it gives no items, the keys a reader checks first
    (`checked_before`) and then it are checked, so a file's first fault is the one reported."""
    items = list(source.items(key))
    if not items:
        for name in (*checked_before, key):
            source.check_array(name)
    return items


def _image_fault(entry) -> str | None:
    if not isinstance(entry, dict):
        return "image entry is not a JSON object"
    if not is_integer(entry.get("id")):
        return "image entry has no integer 'id'"
    for key in ("width", "height"):
        if not is_integer(entry.get(key)) or entry[key] <= 0:
            return f"invalid {key} in JSON: {entry.get(key)!r}"
    if safe_relative(entry.get("file_name")) is None:
        return f"unsafe or empty file_name {entry.get('file_name')!r} (absolute, '..' or backslash)"
    return None


def _mask_name(file_name: str) -> str:
    return str(PurePosixPath(file_name).with_suffix(".png"))


def load_split(paths: str | os.PathLike | Sequence[str | os.PathLike], rules: LabelRules = LabelRules(),
               max_images: int | None = None) -> Split:
    """Parse and check a split's COCO files (several are merged: categories and images by id);
    images come sorted by id so that shards are reproducible. An annotation's layer is the
    position of its file: where two files' annotations cover a pixel, the earlier file wins."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    files = [_read_file(path) for path in paths]
    where = " + ".join(map(str, paths))
    names = _merged_categories(files)
    if not names:
        raise InputError(f"{where}: no categories: a file without categories cannot give class masks")
    images, cut = _image_records(_merged_entries(files), max_images)
    split = Split(labels=label_map(where, names, rules), category_ids=sorted(names), images=images,
                  notes=[note for file in files for note in file.notes])
    split.orphan_annotations = _attach_annotations(files, images, cut)
    if split.orphan_annotations:
        split.notes.append(f"{split.orphan_annotations} annotation(s) name no usable image id and were not used")
    return split


def _read_file(path: str | os.PathLike) -> _File:
    """One file's arrays, streamed; read whole where only Python's json reader accepts it."""
    try:
        return _contents(StreamedFile(path))
    except NotStreamable:
        file = _contents(WholeFile(path))
        file.notes.append(f"{path}: read whole, not streamed: the file holds NaN or Infinity, which only "
                          "Python's json reader accepts")
        return file


def _contents(source: StreamedFile | WholeFile) -> _File:
    entries = _array(source, "images")
    categories = _array(source, "categories", checked_before=("annotations",))
    category_names(source.path, categories)  # a file's own faults are named with its own path
    annotations: dict = {}
    seen = 0
    for ann in source.items("annotations"):
        seen += 1
        image_id = ann.get("image_id") if isinstance(ann, dict) else None
        blob = pickle.dumps(ann, protocol=pickle.HIGHEST_PROTOCOL)
        annotations.setdefault(image_id if is_integer(image_id) else None, []).append(blob)
    if not seen:
        source.check_array("annotations")
    return _File(source.path, entries, categories, annotations)


def _merged_categories(files: list[_File]) -> dict[int, str]:
    """Category names by id over all files; one id with two names is refused."""
    names: dict[int, str] = {}
    owner: dict[int, str | os.PathLike] = {}
    for file in files:
        for cid, name in category_names(file.path, file.categories).items():
            if cid in names and names[cid] != name:
                raise InputError(f"{file.path}: category id {cid} is {name!r}, but {names[cid]!r} in {owner[cid]}")
            names.setdefault(cid, name)
            owner.setdefault(cid, file.path)
    return names


def _identity(entry: dict) -> str:
    return f"{entry.get('file_name')!r} of {entry.get('width')}x{entry.get('height')}"


def _merged_entries(files: list[_File]) -> list:
    """The image entries of all files; an id another file declared is the same image (kept once)
    or refused where its file name or size differs."""
    first: dict[int, tuple] = {}  # image id -> (file, entry) where it was first declared
    merged = []
    for file in files:
        for entry in file.entries:
            image_id = entry.get("id") if isinstance(entry, dict) else None
            if is_integer(image_id) and image_id in first and first[image_id][0] is not file:
                other_file, other = first[image_id]
                if _identity(entry) != _identity(other):
                    raise InputError(f"{file.path}: image {image_id} is {_identity(entry)}, but "
                                     f"{_identity(other)} in {other_file.path}")
                continue
            if is_integer(image_id):
                first.setdefault(image_id, (file, entry))
            merged.append(entry)
    return merged


def _image_records(entries: list, max_images: int | None) -> tuple[list[dict], set[int]]:
    """One record per image entry, usable entries first by id (the rest in file order), each with
    its skip reason or None; and the ids `max_images` cut (their annotations are not orphans)."""
    id_count = Counter(e["id"] for e in entries if isinstance(e, dict) and is_integer(e.get("id")))
    order = sorted(range(len(entries)), key=lambda i: (0, entries[i]["id"], i)
                   if isinstance(entries[i], dict) and is_integer(entries[i].get("id")) else (1, 0, i))
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
            "layers": [],
            "skip": skip,
        })
    return images, set(id_count) - {img["id"] for img in images}


def _attach_annotations(files: list[_File], images: list[dict], cut: set[int]) -> int:
    """Each annotation onto its usable image, file by file in file order, with its file's
    position as its layer; returns the orphans (those `max_images` cut are not orphans)."""
    usable = {img["id"]: img for img in images if img["skip"] is None}
    orphans = 0
    for layer, file in enumerate(files):
        for image_id, blobs in file.annotations.items():
            image = usable.get(image_id)
            if image is not None:
                image["annotations"] += blobs
                image["layers"] += [layer] * len(blobs)
            elif image_id not in cut:
                orphans += len(blobs)
        file.annotations = {}  # the images hold them now
    return orphans


def annotations_of(record: dict) -> list:
    """An image record's annotations, as the file holds them."""
    return [pickle.loads(blob) for blob in record["annotations"]]
