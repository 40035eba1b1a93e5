"""The split folder: the one format every stage after the mask stage reads.

    OUT/images/<file_name>     links to (or copies of) the usable source images
    OUT/masks/<stem>.png       uint8 masks: 0 background and 1..K classes, or 0..K-1 classes
                               where the data set labels every pixel; 255 ignore
    OUT/manifest.csv           one row per image entry: ok or skipped with the reason, the
                               mask's checksum, and whether the image is held out of training
    OUT/labels.csv             label, category_id, name (background: no category)
    OUT/summary.json           counts, for the report

This module alone writes and reads `manifest.csv` and `labels.csv`; other modules use its
named fields.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cocoseg.shared import manifests
from cocoseg.shared.errors import InputError
from cocoseg.shared.files import checksum, read_csv, read_json, write_csv
from cocoseg.shared.labels import BACKGROUND
from cocoseg.shared.manifests import OK

MANIFEST_COLUMNS = ["image_id", "file_name", "width", "height", "annotations", "status", "reason", "mask",
                    "mask_checksum", "holdout"]
LABEL_COLUMNS = ["label", "category_id", "name"]


def manifest_row(image_id, file_name: str, width, height, annotations: int, status: str, reason: str,
                 mask: str = "", mask_checksum: str = "", holdout: bool = False) -> dict:
    return {"image_id": image_id, "file_name": file_name, "width": width, "height": height,
            "annotations": annotations, "status": status, "reason": reason, "mask": mask,
            "mask_checksum": mask_checksum, "holdout": int(bool(holdout))}


def write_manifest(path: Path, rows: list[dict]) -> None:
    manifests.write_manifest(path, MANIFEST_COLUMNS, rows)


def read_manifest_rows(path: Path) -> list[dict]:
    """Every row of a manifest file, usable or not, as written."""
    return read_csv(path, "a manifest.csv of `cocoseg masks`", MANIFEST_COLUMNS)


def label_rows(labels: list, background: bool) -> list:
    """(label, category_id, name) of every label value: the classes, after background (label 0,
    no category) where the split has one."""
    return [(BACKGROUND, "", "background"), *labels] if background else list(labels)


def write_labels(path: Path, labels: list, background: bool = True) -> None:
    """`labels` are (label, category_id, name) of the classes; background is added as label 0
    where pixels no annotation covers are background (`masks.unlabeled`)."""
    write_csv(path, LABEL_COLUMNS, label_rows(labels, background))


def _split_file(split_dir: Path, name: str) -> Path:
    path = Path(split_dir) / name
    if not path.is_file():
        raise InputError(f"{path}: not found (is {split_dir} a `cocoseg masks` output folder?)")
    return path


def read_label_map(path: Path) -> list[dict]:
    """A labels.csv: a split's, a model's beside its predictions or export."""
    return read_csv(path, "a labels.csv of `cocoseg masks`", LABEL_COLUMNS)


def read_labels(split_dir: Path) -> list[dict]:
    return read_label_map(_split_file(split_dir, "labels.csv"))


def read_split_summary(split_dir: Path) -> dict:
    """A split's summary.json: its counts and labelled pixels per class."""
    return read_json(_split_file(split_dir, "summary.json"), "a summary.json of `cocoseg masks`",
                     ("ok", "skipped", "class_pixels"))


def read_manifest(split_dir: Path, subset: str = "all") -> list[dict]:
    """The usable images of a split in manifest order: `all`, those trained on (`fit`), or those
    held out of training (`holdout`)."""
    path = _split_file(split_dir, "manifest.csv")
    rows = [row for row in read_manifest_rows(path) if row["status"] == OK]
    if subset == "fit":
        rows = [row for row in rows if row["holdout"] != "1"]
    elif subset == "holdout":
        rows = [row for row in rows if row["holdout"] == "1"]
    if not rows:
        hint = {"all": "", "fit": " (all are held out)",
                "holdout": " (hold some out with --holdout-fraction, or choose epochs on another split)"}
        raise InputError(f"{path}: no usable image in its {subset} subset{hint[subset]}")
    return rows


def holdout_size(usable: int, fraction: float, count: int | None) -> int:
    """How many images a carve-out takes: `fraction` of the usable ones (at least 1) capped at
    `count`, or `count` alone when there is no fraction. The cap keeps choosing an epoch cheap on a
    large split (15% of COCO train would be 17,700 images scored every epoch)."""
    share = math.ceil(fraction * usable) if fraction > 0 else None
    size = min(share, count) if share is not None and count is not None else share or count or 0
    if size and size >= usable:
        raise InputError(f"holdout of {size} image(s) leaves nothing to train on ({usable} usable)")
    return size


def draw_holdout(image_ids: list[int], size: int, seed: int) -> set[int]:
    """A seeded draw of whole images, independent of shard count and manifest order."""
    ordered = sorted(image_ids)
    picked = np.random.default_rng(seed).choice(len(ordered), size=size, replace=False) if size else []
    return {ordered[i] for i in picked}


def content_digest(split_dir: Path, subset: str) -> str:
    """One checksum of what a run reads from a split subset: file names, sizes and mask contents."""
    lines = ("\t".join((row["file_name"], row["width"], row["height"], row["mask"], row["mask_checksum"])) + "\n"
             for row in read_manifest(split_dir, subset))
    return checksum("".join(lines).encode())


def class_pixels(split_dir: Path, labels: list[dict]) -> list[int]:
    """Labelled pixels of each label (in `labels` order), as the mask stage counted them."""
    counts = read_split_summary(split_dir)["class_pixels"]
    return [int(counts.get(row["name"], 0)) for row in labels]


def label_map_difference(labels: list[dict], other: list[dict], names: tuple[str, str]) -> str | None:
    """The first difference between two label maps (rows of labels.csv) named `names`, in words;
    None if they are equal."""
    def describe(row: dict) -> str:
        category = f" (category {row['category_id']})" if row["category_id"] not in ("", None) else ""
        return f"{row['name']!r}{category}"

    for mine, theirs in zip(labels, other):
        if [str(mine[c]) for c in LABEL_COLUMNS] != [str(theirs[c]) for c in LABEL_COLUMNS]:
            return (f"label {mine['label']} is {describe(mine)} in {names[0]}, "
                    f"label {theirs['label']} {describe(theirs)} in {names[1]}")
    if len(labels) != len(other):
        return f"{len(labels)} labels in {names[0]}, {len(other)} in {names[1]}"
    return None


def write_label_map(path: Path, labels: list[dict]) -> None:
    """A label map as read (background included), e.g. beside predictions."""
    write_csv(path, LABEL_COLUMNS, [[row[c] for c in LABEL_COLUMNS] for row in labels])
