"""Real COCO photos for the benchmarks: the repository's 14 (tests/data/coco-real) by default, or
a folder the user names with `--coco`, in COCO 2017's layout (annotations/instances_train2017.json
with train2017/, and the same for val2017) or in coco-real's (instances.json with images/)."""

from __future__ import annotations

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
