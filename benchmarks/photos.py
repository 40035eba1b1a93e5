"""Real COCO photos for the benchmarks: the repository's 14 (tests/data/coco-real) by default, or
a folder the user names with `--coco`, in COCO 2017's layout (annotations/instances_train2017.json
with train2017/, and the same for val2017) or in coco-real's (instances.json with images/)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from commits import REPO

COCO_REAL = REPO / "tests" / "data" / "coco-real"


def coco_splits(folder: Path) -> dict[str, tuple[Path, Path]]:
    """Split name -> (its COCO file, its image folder); exits with one line where there is none."""
    splits = {split: (folder / "annotations" / f"instances_{split}.json", folder / split)
              for split in ("train2017", "val2017")}
    splits = {name: paths for name, paths in splits.items() if paths[0].is_file()}
    if (folder / "instances.json").is_file():
        splits[folder.name] = (folder / "instances.json", folder / "images")
    if not splits:
        raise SystemExit(f"{folder}: neither instances.json nor annotations/instances_*2017.json")
    return splits


def repeated_coco(root: Path, coco: Path, copies: int) -> tuple[Path, Path, str]:
    """One COCO file of every source image `copies` times (symlinked files, new ids and names)."""
    splits = coco_splits(coco)
    sources = list(splits.values())
    label = f"{coco.name} {'+'.join(splits)} x{copies}"
    images_dir = root / "images"
    images_dir.mkdir(parents=True)
    merged = {"images": [], "annotations": [], "categories": None}
    for copy in range(copies):
        for annotation_file, image_dir in sources:
            data = json.loads(annotation_file.read_text())
            merged["categories"] = data["categories"]
            offset = 10_000_000 * (copy * len(sources) + sources.index((annotation_file, image_dir)) + 1)
            for img in data["images"]:
                name = f"c{copy}_{img['file_name']}"
                os.symlink(image_dir / img["file_name"], images_dir / name)
                merged["images"].append({**img, "id": img["id"] + offset, "file_name": name})
            for ann in data["annotations"]:
                merged["annotations"].append({**ann, "id": ann["id"] + offset, "image_id": ann["image_id"] + offset})
    path = root / "instances.json"
    path.write_text(json.dumps(merged))
    return path, images_dir, label
