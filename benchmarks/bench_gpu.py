"""Training throughput on one GPU, end to end: real loader, real model, Lightning.

    python benchmarks/bench_gpu.py [--encoders resnet50 resnet18] [--size 512] [--batch 16]
                                   [--steps 30] [--workers N] [--compile] [--cpu]

DeepLabV3+ per encoder at `--size`, batch `--batch`: fp32 against bf16-mixed, channels-last on
and off (and with --compile, torch.compile on the bf16 channels-last setting). Each setting
trains `--steps` timed steps after 5 warm-up steps, on the synthetic demo data upscaled to the
crop size by the training augmentation (small images: decoding is cheaper than real photos).
Prints one table: images/s, ratio to fp32 of the same encoder, peak CUDA memory. About 2-4
minutes on an H100-class GPU. Goals: >= 250 images/s for resnet50 at 512 in bf16, and bf16
>= 1.8x fp32. Exits with status 2 and one line where no CUDA GPU is usable. `--cpu` runs the
same code on the CPU (with small `--size` and `--steps`) to check the script where no GPU is;
its figures say nothing about GPUs, and peak memory is then the process's resident peak.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pytorch_lightning as pl
import torch

from cocoseg.masks.convert import convert
from cocoseg.masks.demo import make_demo
from cocoseg.shared.hardware import device_name, peak_memory_mb
from cocoseg.training.data import SegmentationDataModule
from cocoseg.training.module import SegmentationModule
from cocoseg.training.variants import Variant


class StepTimer(pl.Callback):
    """Times the training steps after `warmup` steps, synchronising with the GPU."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.steps, self.seconds = warmup, 0.0, 0, 0.0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if batch_idx + 1 == self.warmup:
            self.start = time.perf_counter()
        elif batch_idx + 1 > self.warmup:
            self.steps += 1
            self.seconds = time.perf_counter() - self.start


def measure(data, accelerator: str, encoder: str, precision: str, channels_last: bool, compiled: bool, steps: int,
            batch: int, classes: int) -> tuple[float, float]:
    pl.seed_everything(0)
    module = SegmentationModule(Variant(encoder=encoder, lr=1e-3, weight_decay=1e-4, channels_last=channels_last),
                                classes)
    if compiled:
        module.model = torch.compile(module.model)
    timer = StepTimer(warmup=5)
    if accelerator == "gpu":
        torch.cuda.reset_peak_memory_stats()
    trainer = pl.Trainer(accelerator=accelerator, devices=1, precision=precision, max_steps=steps + 5, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, limit_val_batches=0,
                         num_sanity_val_steps=0, callbacks=[timer], enable_model_summary=False,
                         use_distributed_sampler=False)
    trainer.fit(module, datamodule=data)
    return timer.steps * batch / timer.seconds, peak_memory_mb(accelerator)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoders", nargs="+", default=["resnet50", "resnet18"])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--workers", type=int, default=min(8, len(os.sched_getaffinity(0))))
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (bf16, channels-last)")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU to check the script (figures mean nothing)")
    args = parser.parse_args()
    if not (args.cpu or torch.cuda.is_available()):
        print("bench_gpu: no usable CUDA GPU here; run it on a GPU machine", file=sys.stderr)
        return 2
    accelerator = "cpu" if args.cpu else "gpu"

    torch.backends.cudnn.benchmark = True
    settings = [("32-true", False, False), ("32-true", True, False), ("bf16-mixed", False, False),
                ("bf16-mixed", True, False)] + ([("bf16-mixed", True, True)] if args.compile else [])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        images = args.batch * (args.steps + 5)
        make_demo(root / "demo", {"train": images, "val": 8}, seed=0)
        for split in ("train", "val"):
            convert(root / "demo" / "annotations" / f"{split}.json", root / "demo" / "images" / split, root / split,
                    workers=2)
        data = SegmentationDataModule(root / "train", root / "val",
                                      Variant(image_size=args.size, batch_size=args.batch), num_workers=args.workers)
        for encoder in args.encoders:
            fp32 = None
            for precision, channels_last, compiled in settings:
                speed, memory = measure(data, accelerator, encoder, precision, channels_last, compiled, args.steps,
                                        args.batch, 6)
                fp32 = fp32 or speed
                rows.append((encoder, precision, channels_last, compiled, speed, speed / fp32, memory))
    print(f"DeepLabV3+ training on {device_name(accelerator)}, {args.size} px, batch {args.batch}, "
          f"{args.steps} timed steps, {args.workers} loader workers, torch {torch.__version__}")
    print("| encoder | precision | channels-last | compile | images/s | vs fp32 | peak MiB |")
    print("|---|---|---|---|---|---|---|")
    for encoder, precision, channels_last, compiled, speed, ratio, memory in rows:
        print(f"| {encoder} | {precision} | {'yes' if channels_last else 'no'} | {'yes' if compiled else 'no'} | "
              f"{speed:.0f} | {ratio:.2f}x | {memory:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
