"""Loader throughput per worker on real COCO JPEGs: cocoseg's uint8 loader against a float loader, same run.

    python benchmarks/bench_loader.py [--coco DIR] [--size 512] [--batch 16] [--passes 10] [--enlarge 4]

The uint8 loader (cocoseg's): OpenCV JPEG decode, uint8 HWC images and masks out of the
worker, normalisation on the device. The float loader (the common albumentations recipe): Pillow
decode, Normalize + ToTensorV2 in the worker, float32 CHW images and int64 masks. Both run the
same training augmentation with the same seed. A second table reads the first split enlarged
`--enlarge` times through the uint8 loader, decoding JPEGs in full against reduced (DCT scaling).

--coco is the repository's 14 real COCO images (tests/data/coco-real) by default, or any folder
in COCO 2017's layout (annotations/instances_{train,val}2017.json beside {train,val}2017/).
Each split goes through `cocoseg masks` into a temporary folder. Two measures per loader:
- "worker": a DataLoader with one worker process and batches of `--batch`, as training builds it,
  read in the main process: decoding, augmentation, batching and the hand-over to the training
  process, which is what one worker delivers;
- "in-process": the dataset's items read in this process (decode and augmentation only).
Each after a warm-up pass, over `--passes` passes. Goals: >= 200 images/s per worker and >= 1.8x
the float loader on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2
from PIL import Image
from torch.utils.data import DataLoader

from cocoseg.convert import convert
from cocoseg.data import (MEAN, STD, SegmentationDataModule, SegmentationDataset, load_mask, normalize, reseed_worker,
                          train_longest_side, train_transform)
from cocoseg.decode import to_rgb
from cocoseg.png import encode_mask_png
from cocoseg.splitfolder import OK, read_manifest_rows, write_manifest

REPO = Path(__file__).resolve().parents[1]


class FloatDataset(SegmentationDataset):
    """The float loader's items: Pillow decode, float32 normalisation and int64 masks."""

    def __getitem__(self, index: int):
        row = self.rows[index]
        with Image.open(self.split_dir / "images" / row["file_name"]) as im:
            image = to_rgb(im)
        out = self.transform(image=image, mask=load_mask(self.split_dir / "masks" / row["mask"]))
        return out["image"], out["mask"].long()


def float_loader(split_dir: Path, size: tuple[int, int], batch: int) -> DataLoader:
    transform = A.Compose([*train_transform(size, seed=0).transforms, A.Normalize(mean=MEAN, std=STD), ToTensorV2()],
                          seed=0)
    return DataLoader(FloatDataset(split_dir, transform), batch_size=batch, num_workers=1, persistent_workers=True,
                      worker_init_fn=reseed_worker, shuffle=True, drop_last=True)


def uint8_loader(split_dir: Path, size: tuple[int, int], batch: int) -> DataLoader:
    data = SegmentationDataModule(split_dir, split_dir, size, batch, num_workers=1, seed=0)
    data.setup()
    return data.train_dataloader()


def loader_rate(loader: DataLoader, passes: int) -> float:
    for _ in loader:  # warm-up: worker start, page cache, lazy imports
        pass
    images, start = 0, time.perf_counter()
    for _ in range(passes):
        for batch_images, _masks in loader:
            images += len(batch_images)
    return images / (time.perf_counter() - start)


def item_rate(dataset, passes: int) -> float:
    for index in range(len(dataset)):
        dataset[index]
    start = time.perf_counter()
    for _ in range(passes):
        for index in range(len(dataset)):
            dataset[index]
    return passes * len(dataset) / (time.perf_counter() - start)


def enlarged_split(split_dir: Path, out: Path, factor: int) -> Path:
    """A copy of a split folder with every image and mask `factor` times larger (bilinear, nearest)."""
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    shutil.copy(split_dir / "labels.csv", out / "labels.csv")
    rows = read_manifest_rows(split_dir / "manifest.csv")
    for row in rows:
        if row["status"] != OK:
            continue
        with Image.open(split_dir / "images" / row["file_name"]) as im:
            im.convert("RGB").resize((im.width * factor, im.height * factor), Image.BILINEAR).save(
                out / "images" / row["file_name"], quality=92)
        mask = load_mask(split_dir / "masks" / row["mask"])
        (out / "masks" / row["mask"]).write_bytes(encode_mask_png(np.kron(mask, np.ones((factor, factor), np.uint8))))
        row["width"], row["height"] = int(row["width"]) * factor, int(row["height"]) * factor
    write_manifest(out / "manifest.csv", rows)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--coco", type=Path, default=REPO / "tests" / "data" / "coco-real")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--passes", type=int, default=10)
    parser.add_argument("--enlarge", type=int, default=4, help="factor for the large-image table (0: none)")
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
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for split, (instances, images) in splits.items():
            convert(instances, images, Path(tmp) / split, workers=2)
        for split in splits:
            split_dir = Path(tmp) / split
            batch = min(args.batch, len(SegmentationDataset(split_dir, train_transform(size, 0))))
            floats, uint8 = float_loader(split_dir, size, batch), uint8_loader(split_dir, size, batch)
            rows.append((split, len(uint8.dataset), loader_rate(floats, args.passes), loader_rate(uint8, args.passes),
                         item_rate(floats.dataset, args.passes), item_rate(uint8.dataset, args.passes)))
            del floats, uint8  # stop the workers before the next split
        if args.enlarge:
            split = next(iter(splits))
            large = enlarged_split(Path(tmp) / split, Path(tmp) / "enlarged", args.enlarge)
            full = SegmentationDataset(large, train_transform(size, 0))
            reduced = SegmentationDataset(large, train_transform(size, 0), reduce_to=train_longest_side(size))
            large_rows = (split, len(full), item_rate(full, args.passes), item_rate(reduced, args.passes))
        images = torch.from_numpy(np.zeros((1, *size, 3), np.uint8))
        start = time.perf_counter()
        for _ in range(20):
            normalize(images)
        normalise_ms = (time.perf_counter() - start) / 20 * 1000
    print(f"Images/s at {args.size} px ({args.coco}); worker: one loader worker, batches of {args.batch}, "
          f"read in the main process; in-process: decode and augmentation in one thread")
    print("| split | images | float loader, worker | uint8 loader, worker | ratio | float, in-process | "
          "uint8, in-process | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for split, count, old, new, old_items, new_items in rows:
        print(f"| {split} | {count} | {old:.1f} | {new:.1f} | {new / old:.2f}x | {old_items:.1f} | {new_items:.1f} | "
              f"{new_items / old_items:.2f}x |")
    if args.enlarge:
        split, count, full_rate, reduced_rate = large_rows
        print(f"\nImages {args.enlarge}x larger ({split}), uint8 loader in-process: full decode against reduced "
              f"decode (JPEG DCT scaling to the {train_longest_side(size)} px training needs)")
        print("| split | images | full decode | reduced decode | ratio |")
        print("|---|---|---|---|---|")
        print(f"| {split} x{args.enlarge} | {count} | {full_rate:.1f} | {reduced_rate:.1f} | "
              f"{reduced_rate / full_rate:.2f}x |")
    print(f"normalising one image on this CPU after the transfer (what a GPU does instead): {normalise_ms:.2f} ms")


if __name__ == "__main__":
    main()
