"""Training samples read from a split folder against its packed parts (`cocoseg pack`): files
opened per epoch, images/s of one loader worker at the training size, and the time to stage the
parts to a local folder, in one invocation.

    python benchmarks/bench_shared_fs.py [--coco DIR] [--copies 20] [--size 512] [--epochs 3] [--part-mb 1000]

Files opened are counted, not estimated: an audit hook sees every `open` of the process (Pillow's,
OpenCV's through NumPy, ours) under the split folder, epoch by epoch. The loader is the training
one (`TrainingSamples`: decode, reduce, the scale recipe's crops), run in the benchmark's own
process, which is what one loader worker does. On a shared file system each open is a round
trip to the metadata server; here (a local disk) the images/s compare decoding from files with
decoding from bytes read out of a held-open part. Staging copies the parts to a temporary folder
on this machine's disk and checks each copy, as a job does with `stage: local`.

--coco is the repository's 14 real COCO images (tests/data/coco-real) by default, or any folder
in COCO 2017's layout; each image is taken `--copies` times.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from commits import REPO
from photos import COCO_REAL, repeated_coco

from cocoseg.masks.convert import convert
from cocoseg.masks.packed import PACKED, PackedSplit, pack_split, packed_bytes, stage
from cocoseg.training.data import EpochShuffle, TrainingSamples
from cocoseg.training.samples import SplitFolder
from cocoseg.training.variants import Variant


class OpenCounter:
    """Counts `open` audit events on paths under `root` (the hook stays for the process's life:
    Python cannot remove one, so it checks `active`)."""

    def __init__(self, root: Path):
        self.root, self.count, self.active = str(root), 0, False
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple) -> None:
        if self.active and event == "open" and str(args[0]).startswith(self.root):
            self.count += 1


def epochs(samples: TrainingSamples, counter: OpenCounter, count: int) -> tuple[list[int], float]:
    """Files opened in each epoch, and samples per second over all of them."""
    opened, start = [], time.perf_counter()
    for epoch in range(count):
        sampler = EpochShuffle(len(samples), seed=0)
        sampler.set_epoch(epoch)
        counter.count, counter.active = 0, True
        for key in sampler:
            samples[key]
        counter.active = False
        opened.append(counter.count)
    return opened, count * len(samples) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--coco", type=Path, default=COCO_REAL, help="real COCO photos (see above)")
    parser.add_argument("--copies", type=int, default=20)
    parser.add_argument("--size", type=int, default=512, help="training crop side")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--part-mb", type=float, default=1000)
    parser.add_argument("--scratch", type=Path, default=REPO / "results" / "bench",
                        help="where the split folder is written (a local disk)")
    args = parser.parse_args()
    args.scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.scratch) as tmp:
        root = Path(tmp)
        annotations, images, label = repeated_coco(root / "coco", args.coco.resolve(), args.copies)
        split = root / "split"
        convert(annotations, images, split, workers=2)
        start = time.perf_counter()
        index = pack_split(split, args.part_mb)
        pack_seconds = time.perf_counter() - start
        start = time.perf_counter()
        staged = stage(split / PACKED, root / "node-local")
        stage_seconds = time.perf_counter() - start
        megabytes = packed_bytes(split / PACKED) / 1e6
        variant = Variant(image_size=args.size, seed=0)
        counter = OpenCounter(root)
        results = {}
        for name, files in (("folder", SplitFolder(split)), ("packed", PackedSplit(split / PACKED, split)),
                            ("staged", PackedSplit(staged, split))):
            samples = TrainingSamples(split, variant, seed=0, files=files)
            results[name] = epochs(samples, counter, args.epochs)
        shutil.rmtree(staged)
    images_count = len(index["samples"])
    print(f"data: {label}, {images_count} images, {len(index['parts'])} part(s) of {megabytes:.0f} MB in all; "
          f"training samples at {args.size}, {args.epochs} epochs, in one process (one loader worker's work)")
    print(f"packing: {pack_seconds:.1f} s; staging to a local folder (copy and checksum): {stage_seconds:.2f} s "
          f"({megabytes / max(stage_seconds, 1e-9):.0f} MB/s)\n")
    print("| read from | files opened, epoch 1 | files opened, later epochs | images/s | vs folder |")
    print("|---|---|---|---|---|")
    base = results["folder"][1]
    for name, (opened, rate) in results.items():
        later = ", ".join(map(str, opened[1:])) or "-"
        print(f"| {name} | {opened[0]} | {later} | {rate:.1f} | {rate / base:.2f}x |")


if __name__ == "__main__":
    main()
