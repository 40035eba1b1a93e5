"""What a person reads while a job runs: plain progress lines in log files, Lightning's bar at a
terminal, and none of the notices that say nothing about the run.

A log file (Snakemake's `log:`, a SLURM job log) cannot show a progress bar: its carriage
returns make one line of tens of kilobytes that `tail` cannot read. There, training prints one
line per epoch, and one every few minutes inside long epochs.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings

import pytorch_lightning as pl

EVERY_SECONDS = 180.0  # at most this long between two lines inside a long epoch or evaluation

# Lightning notices that say nothing about the run (adverts, internals), silenced where they
# are emitted; every other message and warning still shows.
QUIET_INFO = ("💡 Tip:", "TPU available:", "Loading `train_dataloader` to estimate")
QUIET_WARNINGS = (r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                  r".*does not have many workers.*",
                  r"The number of training batches .* is smaller than the logging interval",
                  r"You have overridden `on_after_batch_transfer` in `LightningModule` but have passed in a")


def at_terminal() -> bool:
    return sys.stderr.isatty()


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class _DropQuietInfo(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(QUIET_INFO)


def quiet_notices() -> None:
    """Silence the notices in `QUIET_INFO` and `QUIET_WARNINGS` for this process."""
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropQuietInfo) for f in logger.filters):
            logger.addFilter(_DropQuietInfo())
    for message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


class Throttle:
    """True at most once every `seconds` (`EVERY_SECONDS` by default), the first time `seconds`
    after it was made."""

    def __init__(self, seconds: float | None = None):
        self.seconds = EVERY_SECONDS if seconds is None else seconds
        self.last = time.perf_counter()

    def __call__(self) -> bool:
        now = time.perf_counter()
        if now - self.last < self.seconds:
            return False
        self.last = now
        return True


class ProgressLines(pl.Callback):
    """One plain line per epoch, and one every `every_seconds` inside an epoch, from rank 0:
    epoch/total, step, training loss, selection mIoU, images/s, elapsed and estimated time left."""

    def __init__(self, every_seconds: float | None = None):
        self.every_seconds = every_seconds

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start, self.start_step = time.perf_counter(), trainer.global_step
        self.total_steps = trainer.estimated_stepping_batches
        self.on_train_epoch_start(trainer, pl_module)  # a fit resumed inside an epoch gets no epoch start

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epoch_start, self.epoch_images = time.perf_counter(), 0
        self.throttle = Throttle(self.every_seconds)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.epoch_images += len(batch[0]) * trainer.world_size
        if trainer.is_global_zero and self.throttle():
            loss = float(outputs["loss"]) if isinstance(outputs, dict) else float(outputs)
            batches = trainer.num_training_batches
            say(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}, batch {batch_idx + 1}/{batches}: "
                f"train loss {loss:.4f}, {self._timing(trainer)}")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or not getattr(pl_module, "history", None):
            return
        row = pl_module.history[-1]
        say(f"epoch {row['epoch']}/{trainer.max_epochs} done: train loss {row['train_loss']:.4f}, "
            f"selection mIoU {row['val_miou']:.4f}, {self._timing(trainer)}")

    def _timing(self, trainer: pl.Trainer) -> str:
        """Images/s of this epoch; time since this run (re)started, and left at that pace."""
        now = time.perf_counter()
        rate = self.epoch_images / max(1e-9, now - self.epoch_start)
        done = trainer.global_step - self.start_step
        left = (now - self.start) / done * (self.total_steps - trainer.global_step) if done > 0 else None
        return (f"{rate:.1f} images/s, elapsed {duration(now - self.start)}, "
                f"left ~{duration(left) if left is not None else '?'}")


class CountLines:
    """Progress of a loop over `total` items: a line every `every_seconds` and one at the end."""

    def __init__(self, what: str, total: int, every_seconds: float | None = None):
        self.what, self.total, self.done = what, total, 0
        self.start, self.throttle = time.perf_counter(), Throttle(every_seconds)

    def step(self) -> None:
        self.done += 1
        if self.done == self.total or self.throttle():
            elapsed = time.perf_counter() - self.start
            rate = self.done / max(1e-9, elapsed)
            left = (self.total - self.done) / rate if rate else 0
            say(f"{self.what}: {self.done}/{self.total} images, {rate:.1f} images/s, "
                f"elapsed {duration(elapsed)}, left ~{duration(left)}")
