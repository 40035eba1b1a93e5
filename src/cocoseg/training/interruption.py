"""Stopping a training run on a signal, or saving on a timer, with a checkpoint to resume from.

A cluster warns a job before its time limit with a signal (the SLURM profile asks for SIGTERM a
few minutes ahead with `--signal`) and ends it with SIGTERM; SIGUSR1 is the other common warning.
On either, the run saves `last.ckpt` at the end of the batch in progress and stops, so the
workflow's retry resumes it mid-epoch. Between signals a timer saves every `checkpoint_minutes`,
so a kill without warning loses minutes, not an epoch. Owns no file format: the checkpoint is
Lightning's. Imports only `shared.errors` of this package (the CLI catches `StopRequested` without torch).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

from cocoseg.shared.errors import StopRequested

STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


class StopSignals:
    """Records SIGUSR1 and SIGTERM instead of dying of them, while the `with` block runs.

    Entered before the data loader starts its workers, which inherit the handlers: a signal sent
    to every process of the job (as SLURM sends it) then leaves the workers running until the
    checkpoint is written, instead of failing the batch in progress.
    """

    def __init__(self):
        self.received: signal.Signals | None = None
        self._previous: dict = {}

    def __enter__(self) -> StopSignals:
        for number in STOP_SIGNALS:
            self._previous[number] = signal.signal(number, self._record)
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _record(self, number: int, frame) -> None:
        self.received = signal.Signals(number)


def save_atomically(trainer: pl.Trainer, path: Path) -> None:
    """`trainer.save_checkpoint` (every process calls it) to a temporary name, then renamed, so a
    kill while writing leaves the previous checkpoint whole."""
    partial = path.with_name(path.name + ".partial")
    trainer.save_checkpoint(partial)
    if trainer.is_global_zero:
        os.replace(partial, path)


class InEpochCheckpoint(pl.Callback):
    """Saves `path` every `minutes` and, on a recorded signal, saves it and stops the run.

    Every process decides alike (the flags of all are combined), since saving is collective.
    The position inside the epoch is Lightning's loop progress, saved in the checkpoint; the
    data module continues the epoch from it (`data.start_position`).
    """

    def __init__(self, path: Path, minutes: float, signals: StopSignals):
        self.path, self.seconds, self.signals = Path(path), minutes * 60, signals
        self.saved_at = time.monotonic()

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.saved_at = time.monotonic()

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        stop, due = self._decide(trainer, module)
        if stop or due:
            save_atomically(trainer, self.path)
            self.saved_at = time.monotonic()
        if stop:
            received = self.signals.received.name if self.signals.received else "SIGTERM"
            raise StopRequested(f"{received}: saved {self.path} after batch {batch_idx + 1} of epoch "
                                f"{trainer.current_epoch + 1} (step {trainer.global_step}); run again to resume there")

    def _decide(self, trainer: pl.Trainer, module: pl.LightningModule) -> tuple[bool, bool]:
        stop = self.signals.received is not None or trainer.received_sigterm
        due = time.monotonic() - self.saved_at >= self.seconds
        if trainer.world_size == 1:
            return stop, due
        flags = torch.tensor([stop, due], dtype=torch.float32, device=module.device)
        stop, due = (trainer.strategy.reduce(flags, reduce_op="max") > 0).tolist()
        return stop, due
