"""The mask stage as three steps, index -> shards -> gather, shared by Snakemake and the CLI.

The annotation files are parsed once (index); each shard gets only its own images and
annotations (instances-format annotations, or panoptic ones with their PNGs); gather assembles a split folder (see `split_folder`) that is byte-identical
whatever the shard count, and may hold a seeded share of the images out of training.
"""

from __future__ import annotations

import json
import pickle
import shutil
import sys
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from cocoseg.masks.coco import annotations_of, load_split
from cocoseg.masks.label_map import LabelRules
from cocoseg.masks.paint import UnusableImage, paint_mask
from cocoseg.masks.panoptic import paint_panoptic
from cocoseg.masks.png import encode_mask_png
from cocoseg.masks.split_folder import (
    draw_holdout,
    holdout_size,
    label_rows,
    manifest_row,
    read_manifest_rows,
    write_labels,
    write_manifest,
)
from cocoseg.shared.errors import InputError
from cocoseg.shared.files import atomic_path, checksum, link_or_copy, read_json, write_bytes, write_json
from cocoseg.shared.image_checks import image_fault
from cocoseg.shared.manifests import OK, SKIPPED
from cocoseg.shared.shards import gather_shards, shard_share

PIXELS = "class_pixels.json"  # in a shard folder: labelled pixels per label value, summed by gather


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def index_split(annotations: Path | list[Path], index_dir: Path, shards: int, rules: LabelRules = LabelRules(),
                max_images: int | None = None, panoptic: bool = False) -> None:
    """Parse the COCO files once and write `meta.json` plus one `shard-<i>.pkl` per shard.

    Shard parts are pickles: internal, temporary, written and read only by this module, and
    pickling is ten times faster than JSON for polygon-heavy parts (COCO train: 448 MB). Their
    annotations stay pickled one by one (`coco.annotations_of` unpickles them in the shard job).
    """
    split = load_split(annotations, rules, max_images=max_images)
    header = {"labels": split.labels, "category_ids": split.category_ids, "background": rules.background,
              "fill": rules.fill, "ignored": sorted(rules.ignore_categories), "panoptic": panoptic}
    for i in range(shards):
        part = {**header, "shard": i, "shards": shards, "images": shard_share(split.images, i, shards)}
        with atomic_path(index_dir / f"shard-{i}.pkl") as tmp, open(tmp, "wb") as f:
            pickle.dump(part, f, protocol=pickle.HIGHEST_PROTOCOL)  # framed to the file, never whole in memory
    sources = [annotations] if isinstance(annotations, (str, Path)) else annotations
    write_json(index_dir / "meta.json", {**header, "source": " + ".join(map(str, sources)), "images": len(split.images),
                                         "orphan_annotations": split.orphan_annotations, "notes": split.notes})


def label_histogram(mask: np.ndarray) -> np.ndarray:
    """Pixels per label value (256 counts) of a uint8 mask.

    Pillow counts uint8 in place; `np.bincount` first copies the mask to int64 (2.6x the time
    on a 640x480 mask).
    """
    return np.array(Image.fromarray(mask).histogram(), dtype=np.int64)


def painter(shard: dict, panoptic_dir: Path | None) -> Callable[[dict], tuple[np.ndarray, list[str]]]:
    """What paints one image record of `shard`, by the rules its index recorded."""
    label_of = {cid: label for label, cid, _ in shard["labels"]}
    rules = {"declared": set(shard["category_ids"]), "fill": shard["fill"], "ignored": frozenset(shard["ignored"])}
    if shard["panoptic"]:
        return lambda record: paint_panoptic(annotations_of(record), panoptic_dir, record["height"], record["width"],
                                             label_of, **rules)
    return lambda record: paint_mask(annotations_of(record), record["height"], record["width"], label_of,
                                     layers=record["layers"], **rules)


def convert_image(record: dict, paint: Callable, image_dir: Path, out_dir: Path, link_mode: str,
                  compress_level: int, pixels: np.ndarray) -> dict:
    """Write one image's mask and link, add its pixels per label to `pixels`; return its manifest row."""
    status, reason, mask_name, digest = SKIPPED, record["skip"], "", ""
    if reason is None:
        source = image_dir / record["file_name"]
        reason = image_fault(source, record["width"], record["height"])
    if reason is None:
        try:
            mask, notes = paint(record)
        except UnusableImage as e:
            reason = str(e)
        else:
            png = encode_mask_png(mask, compress_level)
            pixels += label_histogram(mask)
            write_bytes(out_dir / "masks" / record["mask"], png)
            link_or_copy(source, out_dir / "images" / record["file_name"], link_mode)
            status, reason, mask_name, digest = OK, "; ".join(notes), record["mask"], checksum(png)
    return manifest_row(record["id"], record["file_name"], record["width"], record["height"],
                        len(record["annotations"]), status, reason, mask_name, digest)


def convert_shard(shard_file: Path, image_dir: Path, out_dir: Path, link_mode: str = "symlink",
                  compress_level: int = 1, name: str = "", panoptic_dir: Path | None = None) -> None:
    """Convert one shard into `out_dir`; its manifest is written last, so it marks completion.
    `panoptic_dir` holds the panoptic PNGs where the index read a panoptic file."""
    start = time.perf_counter()
    with open(shard_file, "rb") as f:
        shard = pickle.load(f)
    if shard["panoptic"] and panoptic_dir is None:
        raise InputError(f"{shard_file}: indexed from a panoptic file: give the folder of its PNGs")
    paint = painter(shard, Path(panoptic_dir) if panoptic_dir else None)
    pixels = np.zeros(256, dtype=np.int64)
    rows = [convert_image(rec, paint, Path(image_dir), Path(out_dir), link_mode, compress_level, pixels)
            for rec in shard["images"]]
    write_json(Path(out_dir) / PIXELS, pixels.tolist())
    write_manifest(Path(out_dir) / "manifest.csv", rows)
    seconds = time.perf_counter() - start
    ok = sum(row["status"] == OK for row in rows)
    log(f"{name}shard {shard['shard'] + 1}/{shard['shards']}: {len(rows)} images, {ok} ok, "
        f"{len(rows) - ok} skipped, {seconds:.1f} s ({len(rows) / max(seconds, 1e-9):.0f} images/s)")


def gather_split(meta_file: Path, shard_dirs: list[Path], out_dir: Path, name: str = "",
                 holdout_fraction: float = 0.0, holdout_count: int | None = None, holdout_seed: int = 0) -> dict:
    """Assemble the split folder from its shards, in shard order; returns the summary.

    A holdout (a fraction or a count of the usable images, drawn by `holdout_seed`) is marked
    in the manifest: training leaves it out, and it can choose the best epoch.
    """
    meta = read_json(meta_file, "a meta.json of `cocoseg index`", ("labels", "background", "images", "source"))
    out_dir = Path(out_dir)
    pixels = np.zeros(256, dtype=np.int64)
    for shard_dir in map(Path, shard_dirs):
        with open(shard_dir / PIXELS, encoding="utf-8") as f:
            pixels += np.asarray(json.load(f), dtype=np.int64)
    rows = gather_shards(shard_dirs, out_dir, lambda shard_dir: read_manifest_rows(shard_dir / "manifest.csv"),
                         lambda shard_dir, row: [f"masks/{row['mask']}", f"images/{row['file_name']}"])
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    if len(rows) != meta["images"]:
        raise RuntimeError(f"{meta_file}: shards hold {len(rows)} images, the index {meta['images']}")
    usable = [int(row["image_id"]) for row in rows if row["status"] == OK]
    held_out = draw_holdout(usable, holdout_size(len(usable), holdout_fraction, holdout_count), holdout_seed)
    for row in rows:
        row["holdout"] = int(row["status"] == OK and int(row["image_id"]) in held_out)
    ok = len(usable)
    summary = {
        "source": meta["source"],
        "images": len(rows),
        "ok": ok,
        "skipped": len(rows) - ok,
        "annotations": sum(int(row["annotations"]) for row in rows),
        "holdout": {"images": len(held_out), "fraction": holdout_fraction, "count": holdout_count,
                    "seed": holdout_seed},
        "orphan_annotations": meta["orphan_annotations"],
        "classes": len(meta["labels"]),
        "class_pixels": {name: int(pixels[label]) for label, _, name in label_rows(meta["labels"], meta["background"])},
    }
    write_labels(out_dir / "labels.csv", meta["labels"], meta["background"])
    write_json(out_dir / "summary.json", summary)
    write_manifest(out_dir / "manifest.csv", rows)
    log(f"{name}{len(rows)} images: {ok} ok, {len(rows) - ok} skipped (reasons in {out_dir / 'manifest.csv'})"
        + (f"; {len(held_out)} held out of training" if held_out else "")
        + "".join(f"; {note}" for note in meta["notes"]))
    return summary


OWNED = ("images", "masks", ".work")
MARKER = ".cocoseg-masks"  # says the folder's images/ and masks/ are ours to replace


def _clear_output(out_dir: Path, image_dir: Path) -> None:
    """Empty what a previous run wrote, and refuse to touch anything else.

    `--output data --images data/images` would otherwise replace the user's own images with links.
    """
    source = image_dir.resolve()
    for sub in OWNED:
        ours = (out_dir / sub).resolve()
        if source == ours or ours in source.parents:
            raise InputError(f"{out_dir}: its {sub}/ folder would hold the output, but it holds the source "
                             f"images ({image_dir}); choose another --output")
    existing = [sub for sub in OWNED if (out_dir / sub).exists()]
    if existing and not (out_dir / MARKER).exists():
        raise InputError(f"{out_dir}: has {', '.join(existing)} not written by cocoseg; choose a new --output")
    for sub in existing:
        shutil.rmtree(out_dir / sub)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MARKER).touch()


def _convert_shard_args(args: tuple) -> None:
    convert_shard(*args)


def convert(annotations: Path | list[Path], image_dir: Path, out_dir: Path, workers: int = 1,
            shards: int | None = None, rules: LabelRules = LabelRules(), max_images: int | None = None,
            link_mode: str = "symlink", compress_level: int = 1, holdout_fraction: float = 0.0,
            holdout_count: int | None = None, holdout_seed: int = 0, panoptic_dir: Path | None = None) -> dict:
    """The whole mask stage in one process pool: what `cocoseg masks` runs."""
    out_dir = Path(out_dir)
    _clear_output(out_dir, Path(image_dir))
    work = out_dir / ".work"
    shards = shards or max(1, workers) * 4
    index_split(annotations, work / "index", shards, rules, max_images=max_images, panoptic=panoptic_dir is not None)
    shard_dirs = [work / "shards" / str(i) for i in range(shards)]
    jobs = [(work / "index" / f"shard-{i}.pkl", image_dir, shard_dirs[i], link_mode, compress_level, "", panoptic_dir)
            for i in range(shards)]
    if workers > 1:
        with Pool(workers) as pool:
            pool.map(_convert_shard_args, jobs, chunksize=1)
    else:
        for job in jobs:
            convert_shard(*job)
    summary = gather_split(work / "index" / "meta.json", shard_dirs, out_dir, holdout_fraction=holdout_fraction,
                           holdout_count=holdout_count, holdout_seed=holdout_seed)
    shutil.rmtree(work)
    return summary
