"""Training throughput: the Lightning pipeline against a bare PyTorch loop, and the data loader
against the model step, on the same model, data and precision, in one invocation.

    python benchmarks/bench_train.py [--encoder resnet18] [--size 128] [--batch 8] [--epochs 3] [--threads N]

Data: the synthetic demo split (written to a temporary folder, then converted to masks).
Goals: Lightning within 10% of the bare loop; the loader at least 2x the model step.
The first epoch of each run is warm-up and not counted.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pytorch_lightning as pl
import torch

from cocoseg.masks.convert import convert
from cocoseg.masks.demo import make_demo
from cocoseg.training.data import SegmentationDataModule
from cocoseg.training.module import SegmentationModule
from cocoseg.training.variants import Variant


class EpochTimer(pl.Callback):
    def __init__(self):
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, module):
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, module):
        self.seconds.append(time.perf_counter() - self._start)


def make_module(args, num_classes: int) -> SegmentationModule:
    pl.seed_everything(0)
    return SegmentationModule(Variant(encoder=args.encoder, lr=1e-3, weight_decay=1e-4, channels_last=True),
                              num_classes)


def lightning_rate(args, data: SegmentationDataModule, num_classes: int) -> float:
    timer = EpochTimer()
    trainer = pl.Trainer(accelerator="cpu", max_epochs=args.epochs, precision="32-true", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, limit_val_batches=0,
                         num_sanity_val_steps=0, callbacks=[timer], enable_model_summary=False)
    trainer.fit(make_module(args, num_classes), datamodule=data)
    images = len(data.train_dataloader()) * args.batch
    return images * (args.epochs - 1) / sum(timer.seconds[1:])


def bare_rate(args, data: SegmentationDataModule, num_classes: int) -> tuple[float, float]:
    """The same module's forward and loss in a hand-written loop; also the step alone on cached batches."""
    module = make_module(args, num_classes)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3, weight_decay=1e-4)
    module.train()
    loader = data.train_dataloader()

    def step(images, masks):
        images, masks = module.on_after_batch_transfer((images, masks), 0)
        optimizer.zero_grad(set_to_none=True)
        loss = module.criterion(module(images), masks)
        loss.backward()
        optimizer.step()

    seconds = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        for images, masks in loader:
            step(images, masks)
        seconds.append(time.perf_counter() - start)
    loop = len(loader) * args.batch * (args.epochs - 1) / sum(seconds[1:])
    cached = [batch for batch in loader]
    start = time.perf_counter()
    for images, masks in cached:
        step(images, masks)
    step_only = len(cached) * args.batch / (time.perf_counter() - start)
    return loop, step_only


def loader_rate(args, data: SegmentationDataModule) -> float:
    loader = data.train_dataloader()
    for _ in loader:  # warm-up: workers start
        pass
    start = time.perf_counter()
    count = sum(len(images) for _ in range(2) for images, _ in loader)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_demo(root / "demo", {"train": args.images, "val": 8})
        for split in ("train", "val"):
            convert(root / "demo" / "annotations" / f"{split}.json", root / "demo" / "images" / split, root / split)
        data = SegmentationDataModule(root / "train", root / "val",
                                      Variant(image_size=args.size, batch_size=args.batch), num_workers=args.threads)
        data.setup()
        num_classes = 6
        lightning = lightning_rate(args, data, num_classes)
        bare, step_only = bare_rate(args, data, num_classes)
        loading = loader_rate(args, data)
    print(f"{args.encoder} at {args.size}px, batch {args.batch}, {args.images} images, fp32 on CPU, "
          f"{args.threads} threads, loader workers {args.threads}; epochs 2-{args.epochs} timed")
    print(f"{'measure':<34} {'images/s':>9} {'ratio':>22}")
    print(f"{'bare PyTorch loop':<34} {bare:9.1f}")
    print(f"{'Lightning pipeline':<34} {lightning:9.1f} {lightning / bare:13.2f}x bare loop")
    print(f"{'model step alone (cached batches)':<34} {step_only:9.1f}")
    print(f"{'data loader alone':<34} {loading:9.1f} {loading / step_only:13.2f}x model step")


if __name__ == "__main__":
    main()
