"""The training recipe on real COCO photos: how much of each crop is padding, and how fast the
loader delivers, for `resize: short_side` (the default) against `fit`, in the same run.

    python benchmarks/bench_loader.py [--coco DIR] [--size 512] [--batch 16] [--passes 10] [--enlarge 8]
                                      [--against COMMIT]

Recipes (each a `Variant` of the given size):
- earlier: `fit` with `scale_range: [0.75, 1.25]` and `crop_max_share: 1` (cocoseg's first recipe);
- fit: `fit` with the default scale range and crop retries;
- short_side: the default (short side to the crop's side x a ratio from [0.5, 2.0], crops where
  no label covers more than 75%);
- short_side, 0.75-2.0: the same without the smallest scales, which are what still pads.
"padding" is the share of training-crop pixels that are padding (ignored by the loss: a GPU
step spent on nothing), over `--passes` epochs of every image (each its own augmentation
stream); the masks' own ignore pixels (crowds) are not counted. Images/s: "worker" is a
DataLoader with one worker process and batches of `--batch`, as training builds it, read in the
main process; "in-process" is decode and augmentation alone. Goal: padding at most 5% under
short_side at 512 on the repository's COCO photos.

`--against COMMIT` adds a row per split for the training loader as it was at that commit (its
src/, run in a fresh process on the same split folders): a commit from before the scale recipe,
whose loader took `(image_size, batch_size)` and fitted each image inside the crop size
(`data.train_transform`, `data.train_longest_side`). Ratios are against that row.

A second table reads the first split enlarged `--enlarge` times through the short_side loader,
decoding JPEGs in full against reduced (DCT scaling to what the largest scale ratio needs).

--coco is the repository's 14 real COCO images (tests/data/coco-real) by default, or any folder
in COCO 2017's layout (annotations/instances_{train,val}2017.json beside {train,val}2017/).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import torch
from commits import source_at
from photos import COCO_REAL, coco_splits
from PIL import Image
from torch.utils.data import DataLoader

from cocoseg.masks.convert import convert
from cocoseg.masks.png import encode_mask_png
from cocoseg.masks.split_folder import OK, read_manifest_rows, write_manifest
from cocoseg.shared.labels import IGNORE
from cocoseg.training.data import SegmentationDataModule, TrainingSamples, sample_generator
from cocoseg.training.samples import load_mask, load_sample
from cocoseg.training.scaling import training_longest_side
from cocoseg.training.transforms import as_tensor, normalize
from cocoseg.training.variants import Variant

RECIPES = {
    "earlier (fit, 0.75-1.25, any crop)": dict(resize="fit", scale_range=(0.75, 1.25), crop_max_share=1.0),
    "fit": dict(resize="fit"),
    "short_side": dict(resize="short_side"),
    "short_side, 0.75-2.0": dict(resize="short_side", scale_range=(0.75, 2.0)),
}


def padding_share(samples: TrainingSamples, passes: int) -> float:
    """Share of training-crop pixels that are padding, over `passes` epochs of every image."""
    padding = total = 0
    for epoch in range(passes):
        for index, row in enumerate(samples.rows):
            image, mask = load_sample(samples.split_dir, row)
            mask = np.where(mask == IGNORE, IGNORE - 1, mask)  # the mask's own ignore pixels are not padding
            _, crop = samples.augment(image, mask, mask.shape, sample_generator(0, 0, epoch, index))
            padding += int((crop == IGNORE).sum())
            total += crop.size
    return padding / total


# Run with the earlier commit's src/ first on sys.path: its loader's padding share and rates.
EARLIER_LOADER = """
import json, sys, time
import numpy as np, torch
from cocoseg.common import IGNORE
from cocoseg.data import SegmentationDataModule, SegmentationDataset, load_sample, train_longest_side, train_transform

split_dir, size, batch, passes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(1)
shape = (size, size)
transform = train_transform(shape, seed=0)
padding = total = 0
dataset = SegmentationDataset(split_dir, transform, "fit", reduce_to=train_longest_side(shape))
for _ in range(passes):
    for row in dataset.rows:
        image, mask = load_sample(split_dir, row)
        crop = transform(image=image, mask=np.where(mask == IGNORE, IGNORE - 1, mask))["mask"]
        padding += int((crop == IGNORE).sum())
        total += crop.size
data = SegmentationDataModule(split_dir, split_dir, shape, min(batch, len(dataset)), num_workers=1, seed=0)
data.setup()
loader = data.train_dataloader()
for _ in loader:
    pass
images, start = 0, time.perf_counter()
for _ in range(passes):
    for batch_images, _masks in loader:
        images += len(batch_images)
worker = images / (time.perf_counter() - start)
for index in range(len(dataset)):
    dataset[index]
start = time.perf_counter()
for _ in range(passes):
    for index in range(len(dataset)):
        dataset[index]
in_process = passes * len(dataset) / (time.perf_counter() - start)
print(json.dumps([padding / total, worker, in_process]))
"""


def earlier_figures(source: Path, split_dir: Path, size: int, batch: int, passes: int) -> tuple[float, float, float]:
    """Padding share, worker and in-process images/s of the training loader in `source` (an
    earlier commit's src/), measured in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    result = subprocess.run([sys.executable, "-c", EARLIER_LOADER, str(split_dir), str(size), str(batch),
                             str(passes)], capture_output=True, text=True, env=env, check=True)
    return tuple(json.loads(result.stdout.splitlines()[-1]))


def training_loader(split_dir: Path, variant: Variant) -> DataLoader:
    data = SegmentationDataModule(split_dir, split_dir, variant, num_workers=1)
    data.setup()
    return data.train_dataloader()


class FullDecode(TrainingSamples):
    """Training samples decoded in full whatever their size (the loader before reduced decoding)."""

    def __getitem__(self, key):
        index, epoch, rank = key
        row = self.rows[index]
        image, mask = load_sample(self.split_dir, row)
        image, mask = self.augment(image, mask, mask.shape, sample_generator(self.seed, rank, epoch, index))
        return as_tensor(image), torch.from_numpy(mask)


def loader_rate(loader: DataLoader, passes: int) -> float:
    for _ in loader:  # warm-up: worker start, page cache, lazy imports
        pass
    images, start = 0, time.perf_counter()
    for _ in range(passes):
        for batch_images, _masks in loader:
            images += len(batch_images)
    return images / (time.perf_counter() - start)


def item_rate(dataset: TrainingSamples, passes: int) -> float:
    for index in range(len(dataset)):
        dataset[index, 0, 0]
    start = time.perf_counter()
    for epoch in range(passes):
        for index in range(len(dataset)):
            dataset[index, epoch + 1, 0]
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
    parser.add_argument("--coco", type=Path, default=COCO_REAL)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--passes", type=int, default=10)
    parser.add_argument("--enlarge", type=int, default=8, help="factor for the large-image table (0: none)")
    parser.add_argument("--against", metavar="COMMIT", help="also the training loader as it was at this commit")
    args = parser.parse_args()
    splits = coco_splits(args.coco)
    torch.set_num_threads(1)
    rows, earlier_source = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for split, (instances, images) in splits.items():
            convert(instances, images, Path(tmp) / split, workers=2)
        for split in splits:
            split_dir = Path(tmp) / split
            for recipe, settings in RECIPES.items():
                variant = Variant(image_size=args.size, batch_size=args.batch, **settings)
                samples = TrainingSamples(split_dir, variant, 0)
                variant.batch_size = min(args.batch, len(samples))
                loader = training_loader(split_dir, variant)
                rows.append((split, recipe, len(samples), padding_share(samples, args.passes),
                             loader_rate(loader, args.passes), item_rate(samples, args.passes)))
                del loader  # stop the worker before the next recipe
            if args.against:
                source = earlier_source or source_at(args.against, Path(tmp))
                earlier_source = source
                rows.append((split, f"{args.against[:10]} (earlier code)", len(samples),
                             *earlier_figures(source, split_dir, args.size, args.batch, args.passes)))
        if args.enlarge:
            split = next(iter(splits))
            large = enlarged_split(Path(tmp) / split, Path(tmp) / "enlarged", args.enlarge)
            variant = Variant(image_size=args.size)
            full, reduced = FullDecode(large, variant, 0), TrainingSamples(large, variant, 0)
            large_rows = (split, len(full), item_rate(full, args.passes), item_rate(reduced, args.passes))
            row = reduced.rows[0]
            needed = training_longest_side(int(row["height"]), int(row["width"]), variant)
        images = torch.from_numpy(np.zeros((1, args.size, args.size, 3), np.uint8))
        start = time.perf_counter()
        for _ in range(20):
            normalize(images)
        normalise_ms = (time.perf_counter() - start) / 20 * 1000
    print(f"Training crops of {args.size} px ({args.coco}), {args.passes} epochs of every image; images/s: worker "
          f"(one loader worker, batches of {args.batch}, read in the main process) and in-process (decode and "
          f"augmentation in one thread)")
    print("| split | recipe | images | padding | images/s, worker | images/s, in-process |")
    print("|---|---|---|---|---|---|")
    for split, recipe, count, padding, worker, items in rows:
        print(f"| {split} | {recipe} | {count} | {padding:.1%} | {worker:.1f} | {items:.1f} |")
    for split in splits:
        by_recipe = {recipe: figures for name, recipe, _, *figures in rows if name == split}
        baseline_name = f"{args.against[:10]} (earlier code)" if args.against else next(iter(RECIPES))
        baseline, new = by_recipe[baseline_name], by_recipe["short_side"]
        print(f"{split}: short_side against {baseline_name}: padding {new[0]:.1%} against {baseline[0]:.1%} "
              f"({new[0] / baseline[0]:.2f}x; goal: at most 5%), images/s per worker {new[1] / baseline[1]:.2f}x, "
              f"in-process {new[2] / baseline[2]:.2f}x")
    if args.enlarge:
        split, count, full_rate, reduced_rate = large_rows
        print(f"\nImages {args.enlarge}x larger ({split}), short_side loader in-process: full decode against "
              f"reduced decode (JPEG DCT scaling; the first image needs a longest side of {needed} px)")
        print("| split | images | full decode | reduced decode | ratio |")
        print("|---|---|---|---|---|")
        print(f"| {split} x{args.enlarge} | {count} | {full_rate:.1f} | {reduced_rate:.1f} | "
              f"{reduced_rate / full_rate:.2f}x |")
    print(f"normalising one image on this CPU after the transfer (what a GPU does instead): {normalise_ms:.2f} ms")


if __name__ == "__main__":
    main()
