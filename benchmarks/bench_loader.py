"""Loader throughput per worker on real COCO JPEGs: the uint8 loader (normalisation on the device)
against the float loader (albumentations Normalize + ToTensorV2 in the worker), same run.

    python benchmarks/bench_loader.py [--coco DIR] [--size 512] [--passes 3]

--coco is the repository's 14 real COCO images (tests/data/coco-real) by default, or any folder
in COCO 2017's layout (annotations/instances_{train,val}2017.json beside {train,val}2017/).
Each split goes through `cocoseg masks` into a temporary folder; each
pipeline then reads every image `--passes` times in one process (one loader worker's work:
decode, mask decode, training augmentation, conversion), after one warm-up pass.
Goals: >= 200 images/s per worker and >= 1.8x the float loader on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A
import torch
from albumentations.pytorch import ToTensorV2

from cocoseg.convert import convert
from cocoseg.data import MEAN, STD, SegmentationDataset, load_sample, normalize, train_transform

REPO = Path(__file__).resolve().parents[1]


class FloatLoaderDataset(SegmentationDataset):
    """The earlier loader: float32 normalisation and tensor conversion in the worker."""

    def __getitem__(self, index: int):
        image, mask = load_sample(self.split_dir, self.rows[index])
        out = self.transform(image=image, mask=mask)
        return out["image"], out["mask"].long()


def rate(dataset, passes: int) -> float:
    for index in range(len(dataset)):  # warm-up: page cache, lazy imports
        dataset[index]
    start = time.perf_counter()
    for _ in range(passes):
        for index in range(len(dataset)):
            dataset[index]
    return passes * len(dataset) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--coco", type=Path, default=REPO / "tests" / "data" / "coco-real")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    splits = {split: (args.coco / "annotations" / f"instances_{split}.json", args.coco / split)
              for split in ("train2017", "val2017")}
    splits = {name: paths for name, paths in splits.items() if paths[0].is_file()}
    if (args.coco / "instances.json").is_file():
        splits[args.coco.name] = (args.coco / "instances.json", args.coco / "images")
    if not splits:
        raise SystemExit(f"{args.coco}: neither instances.json nor annotations/instances_*2017.json")
    torch.set_num_threads(1)
    size = (args.size, args.size)
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for split, (instances, images) in splits.items():
            convert(instances, images, Path(tmp) / split, workers=2)
        for split in splits:
            uint8 = SegmentationDataset(Path(tmp) / split, train_transform(size, seed=0))
            floats = FloatLoaderDataset(Path(tmp) / split, A.Compose(
                [*train_transform(size, seed=0).transforms, A.Normalize(mean=MEAN, std=STD), ToTensorV2()], seed=0))
            rows.append((split, len(uint8), rate(floats, args.passes), rate(uint8, args.passes)))
        images = next(iter(SegmentationDataset(Path(tmp) / rows[0][0], train_transform(size, seed=0))))[0][None]
        start = time.perf_counter()
        for _ in range(20):
            normalize(images)
        normalise_ms = (time.perf_counter() - start) / 20 * 1000
    print(f"Loader work per image at {args.size} px, one process, one thread ({args.coco}):")
    print(f"{'split':<10} {'images':>6} {'float loader img/s':>19} {'uint8 loader img/s':>19} {'ratio':>7}")
    for split, count, old, new in rows:
        print(f"{split:<10} {count:6d} {old:19.1f} {new:19.1f} {new / old:6.2f}x")
    print(f"normalise one image on this CPU after transfer (what a GPU does instead): {normalise_ms:.2f} ms")


if __name__ == "__main__":
    main()
