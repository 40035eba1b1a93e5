"""Training one variant: Lightning fit with resumable checkpoints, then final weights + summary.

The checkpoint folder is not one of the workflow's declared outputs (Snakemake deletes those
before rerunning a job), so a killed job restarts from its last checkpoint and continues, but
only when the run's fingerprint (settings, labels, data) is unchanged; any other run starts
afresh. The declared outputs, `model.pt` and `summary.json`, are written only at the very end.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from pytorch_lightning.plugins.environments import LightningEnvironment, SLURMEnvironment
from pytorch_lightning.strategies import DDPStrategy

from cocoseg.masks.split_folder import class_pixels, content_digest, label_map_difference, read_labels
from cocoseg.shared.errors import InputError, first_line
from cocoseg.shared.files import file_checksum, hard_link, read_json, write_json
from cocoseg.shared.hardware import (
    CpuShare,
    device_name,
    peak_memory_mb,
    resolve_accelerator,
    resolve_precision,
    share_cpus,
)
from cocoseg.shared.processes import end_with_parent
from cocoseg.shared.progress import ProgressLines, at_terminal, quiet_notices
from cocoseg.shared.torch_loading import read_tensors
from cocoseg.training.data import SegmentationDataModule
from cocoseg.training.interruption import InEpochCheckpoint, StopSignals
from cocoseg.training.losses import inverse_sqrt_frequency
from cocoseg.training.model_file import save_model
from cocoseg.training.module import SegmentationModule
from cocoseg.training.network import count_parameters, size_problem
from cocoseg.training.samples import SplitFiles
from cocoseg.training.split_sources import ReadFrom, opened_splits
from cocoseg.training.summary_file import SUMMARY_FILE, read_summary, write_summary
from cocoseg.training.variants import Variant, is_weights_file

FINGERPRINT = "fingerprint.json"  # beside the checkpoints: what the run they belong to was trained on
DDP_TIMEOUT_MINUTES = 5.0  # how long a DDP process waits for a peer before the run fails
CHECKPOINT_MINUTES = 30.0  # last.ckpt inside an epoch at least this often
FINISHED = ("model.pt", SUMMARY_FILE)  # a finished run's outputs, also linked beside its checkpoints


def cluster_environment(devices: int) -> list:
    """Lightning's view of a SLURM job, with its auto-requeue off (Lightning#20347, #21406).

    Under the Snakemake SLURM plugin a job is one task; for several GPUs in one task,
    Lightning must start the per-GPU processes itself rather than expect SLURM to.
    """
    if not SLURMEnvironment.detect():
        return []
    if devices > 1 and int(os.environ.get("SLURM_NTASKS", "1")) < devices:
        return [LightningEnvironment()]
    return [SLURMEnvironment(auto_requeue=False)]


def run_fingerprint(variant: Variant, labels: list[dict], train_dir: Path, val_dir: Path, val_subset: str) -> dict:
    """Everything that determines a run's weights; a checkpoint resumes only under the same one.

    Returned as it reads back from JSON (lists, not tuples), so a saved copy compares equal.
    """
    return json.loads(json.dumps({
        "settings": {k: v for k, v in variant.to_dict().items() if k != "name"},
        "labels": [[row["label"], row["category_id"], row["name"]] for row in labels],
        "train_split": content_digest(train_dir, "fit"),
        "selection_split": f"{val_subset}:{content_digest(val_dir, val_subset)}",
        "encoder_weights": file_checksum(variant.encoder_weights) if is_weights_file(variant.encoder_weights) else None,
    }))


def _changes(saved: dict, current: dict) -> str:
    """Which parts of a fingerprint differ, settings named one by one."""
    settings = saved.get("settings", {})
    keys = [f"settings.{k}" for k, v in current["settings"].items() if settings.get(k) != v]
    keys += [part for part in current if part != "settings" and saved.get(part) != current[part]]
    return ", ".join(keys) or "unknown"


def _clear_run(checkpoint_dir: Path, log_dir: Path) -> None:
    """Remove what an earlier run left (only files this module writes)."""
    for path in [*checkpoint_files(checkpoint_dir), *finished_links(checkpoint_dir), checkpoint_dir / FINGERPRINT]:
        path.unlink(missing_ok=True)
    for path in [*log_dir.glob("csv*"), log_dir / "tensorboard"]:
        if path.is_dir():
            shutil.rmtree(path)


def finished_links(checkpoint_dir: Path) -> list[Path]:
    return [Path(checkpoint_dir) / f"finished-{name}" for name in FINISHED]


def keep_finished(output_dir: Path, checkpoint_dir: Path) -> None:
    """Links to a finished run's outputs beside its checkpoints. Snakemake removes the outputs of
    every job of a group job that fails (an evaluation cut off by the time limit, after training
    finished): the rerun then restores them (`restore_finished`) instead of training again."""
    for name, link in zip(FINISHED, finished_links(checkpoint_dir)):
        hard_link(Path(output_dir) / name, link)


def saved_fingerprint(checkpoint_dir: Path) -> dict | None:
    """The fingerprint saved beside a run's checkpoints; None where there is none or it cannot be
    read (a damaged one resumes nothing)."""
    path = Path(checkpoint_dir) / FINGERPRINT
    try:
        return read_json(path) if path.is_file() else None
    except InputError:
        return None


def restore_finished(checkpoint_dir: Path, output_dir: Path, fingerprint: dict) -> dict | None:
    """The summary of a run that finished under this fingerprint, its outputs linked back into
    `output_dir`; None where there is none."""
    links = finished_links(checkpoint_dir)
    if not (all(link.is_file() for link in links) and saved_fingerprint(checkpoint_dir) == fingerprint):
        return None
    for name, link in zip(FINISHED, links):
        hard_link(link, Path(output_dir) / name)
    print(f"this run finished earlier with the same inputs: {', '.join(FINISHED)} restored from {checkpoint_dir}",
          file=sys.stderr, flush=True)
    return read_summary(Path(output_dir) / SUMMARY_FILE)


def prepare_checkpoints(checkpoint_dir: Path, log_dir: Path, fingerprint: dict) -> tuple[Path | None, int]:
    """The checkpoint to resume from, and the epochs it finished; clears anything a run may not reuse.

    A run resumes only when the saved fingerprint equals this run's: otherwise (changed settings,
    labels or data, a damaged checkpoint, one that holds more than tensors and plain data) it
    starts from epoch 0 and says why in one line.
    """
    checkpoint_dir, log_dir = Path(checkpoint_dir), Path(log_dir)
    last = checkpoint_dir / "last.ckpt"
    saved = saved_fingerprint(checkpoint_dir)
    if os.environ.get("LOCAL_RANK", "0") != "0":  # a process started by rank 0, which prepared already
        return (last, 0) if last.exists() and saved == fingerprint else (None, 0)
    reason = None
    if last.exists() and saved == fingerprint:
        try:
            checkpoint = read_tensors(last)
            finished = len(checkpoint["cocoseg_history"])  # one row per finished epoch; one stopped inside has none
            print(f"resuming from {last}: {finished} epoch(s) finished, step {checkpoint['global_step']}",
                  file=sys.stderr, flush=True)
            return last, finished
        except Exception as e:  # a copy cut short, a full disk, a pickle that would run code
            damaged = last.with_name(f"last.ckpt.damaged-{int(time.time())}")
            last.replace(damaged)
            reason = (f"{last} is not a checkpoint of tensors and plain data ({type(e).__name__}: {first_line(e, 80)}), "
                      f"set aside as {damaged.name}")
    elif checkpoint_files(checkpoint_dir) or any(link.exists() for link in finished_links(checkpoint_dir)):
        reason = (f"{checkpoint_dir} holds checkpoints without a fingerprint" if saved is None else
                  f"{checkpoint_dir} holds a run with other inputs (changed: {_changes(saved, fingerprint)})")
    if reason:
        print(f"training from epoch 0: {reason}; its checkpoints and logs are removed", file=sys.stderr, flush=True)
    _clear_run(checkpoint_dir, log_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    write_json(checkpoint_dir / FINGERPRINT, fingerprint)
    return None, 0


def chosen_epoch(checkpoint: dict) -> dict:
    """The chosen epoch's number, selection scores and weights, all from its own checkpoint.

    `cocoseg_history` in a checkpoint ends with the epoch it was saved at (the module adds the
    row before ModelCheckpoint saves), so number and score cannot come from different epochs.
    """
    row = checkpoint["cocoseg_history"][-1]
    if row["epoch"] != checkpoint["epoch"] + 1:
        raise RuntimeError(f"checkpoint of epoch {checkpoint['epoch'] + 1} ends its history at epoch {row['epoch']}")
    state = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    return {**row, "state_dict": state}


def _selection_split(train_dir: Path, val_dir: Path | None) -> tuple[list[dict], Path, str]:
    """The label map, and the split and subset that choose the best epoch; the maps must agree."""
    val_subset = "all" if val_dir is not None else "holdout"
    val_dir = Path(val_dir if val_dir is not None else train_dir)
    labels = read_labels(train_dir)
    if difference := label_map_difference(labels, read_labels(val_dir), ("the training split", "the other")):
        raise InputError(f"{val_dir}/labels.csv: differs from {train_dir}/labels.csv ({difference})")
    return labels, val_dir, val_subset


def epoch_checkpoints(checkpoint_dir: Path) -> tuple[ModelCheckpoint, ModelCheckpoint]:
    """`best.ckpt` (the best selection mIoU so far) and `last.ckpt` (every epoch, to resume from).

    Only `last.ckpt` carries the optimiser state a resume needs; `best.ckpt` holds weights alone,
    a third of the size (AdamW keeps two moments per weight).

    Two callbacks, because ModelCheckpoint's own `save_last` rewrites last.ckpt only at epochs
    that also saved a best checkpoint (Lightning 2.6): a run resumed after an epoch that did not
    improve would repeat epochs.
    """
    best = ModelCheckpoint(dirpath=checkpoint_dir, filename="best", monitor="val_miou", mode="max", save_top_k=1,
                           save_weights_only=True)
    last = ModelCheckpoint(dirpath=checkpoint_dir, filename="last", monitor=None, save_top_k=1,
                           enable_version_counter=False)
    return best, last


def _trainer(variant: Variant, accelerator: str, processes: int, precision: str, checkpoints: list[pl.Callback],
             log_dir: Path, resumed_from: int, checkpoint_dir: Path, ddp_timeout_minutes: float) -> pl.Trainer:
    """The Lightning trainer of one run. Under DDP, a collective that waits longer than
    `ddp_timeout_minutes` for a peer fails, so the survivors of a dead process exit (the
    workflow's retry then resumes) instead of holding their devices until the job's time limit."""
    # CSVLogger rewrites its file when a run resumes: each run segment gets its own folder.
    csv_version = f"csv-from-epoch-{resumed_from + 1}" if resumed_from else "csv"
    return pl.Trainer(
        accelerator=accelerator, devices=processes,
        strategy=DDPStrategy(timeout=timedelta(minutes=ddp_timeout_minutes),
                             find_unused_parameters=variant.freeze_encoder_epochs > 0)  # a frozen encoder
        if processes > 1 else "auto",
        use_distributed_sampler=False,  # the data module places samplers that never repeat an image
        precision=precision, max_epochs=variant.epochs,
        callbacks=[*checkpoints, *([] if at_terminal() else [ProgressLines()])], enable_progress_bar=at_terminal(),
        logger=[CSVLogger(log_dir, name="", version=csv_version),
                TensorBoardLogger(log_dir, name="", version="tensorboard")],
        plugins=cluster_environment(processes), deterministic="warn", log_every_n_steps=5,
        default_root_dir=checkpoint_dir,
    )


def _fit(trainer: pl.Trainer, module: SegmentationModule, data: SegmentationDataModule, last: Path | None) -> float:
    """Run (or resume) the fit; its wall time in seconds."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*exists and is not empty.*")  # our fingerprint.json
        # the training sampler continues a stopped epoch itself (data.start_position)
        warnings.filterwarnings("ignore", message=".*checkpoint that ended before the epoch ended.*")
        trainer.fit(module, datamodule=data, ckpt_path=last, weights_only=True)
    if trainer.interrupted:
        raise RuntimeError("training was interrupted; rerun to resume from the last checkpoint")
    return time.perf_counter() - start


@dataclass(frozen=True)
class Placement:
    """Where a run's processes run and how each uses its CPUs."""

    accelerator: str
    precision: str
    processes: int
    share: CpuShare


@dataclass(frozen=True)
class Fit:
    """A finished (or stopped) Lightning fit and what it ran on."""

    trainer: pl.Trainer
    module: SegmentationModule
    data: SegmentationDataModule
    best: ModelCheckpoint
    seconds: float
    resumed_from: int


def train(variant: Variant, train_dir: Path, val_dir: Path | None, output_dir: Path, checkpoint_dir: Path,
          log_dir: Path, cpus: int, allow_cpu_fallback: bool = False,
          ddp_timeout_minutes: float = DDP_TIMEOUT_MINUTES, keep_checkpoints: bool = False,
          mem_mb: int | None = None, checkpoint_minutes: float = CHECKPOINT_MINUTES,
          read_from: ReadFrom = ReadFrom()) -> dict | None:
    """Train (or resume) one variant; writes `output_dir/model.pt` and `output_dir/summary.json`,
    then removes the run's checkpoints (`last.ckpt` holds the optimiser's state too, about three
    times the weights) unless `keep_checkpoints`.

    `val_dir` chooses the best epoch; None chooses it on the training split's holdout. `cpus`
    are the job's, shared over its processes (`share_cpus`); `mem_mb`, the job's memory, is recorded
    with that split. `last.ckpt` is also written inside epochs, every `checkpoint_minutes`, and
    on SIGUSR1 or SIGTERM, after which the run stops with `StopRequested` (a rerun resumes at
    that batch). `read_from`: the split folders' files, or their packed parts (staged to the
    node's disk or not; the same samples either way). Returns the summary in the main process,
    None in the others of a multi-process run.
    """
    if os.environ.get("LOCAL_RANK", "0") != "0":  # an extra rank, started by rank 0
        end_with_parent()
    quiet_notices()
    labels, val_dir, val_subset = _selection_split(train_dir, val_dir)
    if problem := size_problem(variant.architecture, variant.encoder, variant.image_size):
        raise InputError(f"image size {problem}")
    placement = place_run(variant, cpus, allow_cpu_fallback)
    fingerprint = run_fingerprint(variant, labels, train_dir, val_dir, val_subset)
    if (finished := restore_finished(checkpoint_dir, output_dir, fingerprint)) is not None:
        return finished
    with opened_splits([train_dir, val_dir], read_from) as (files, data):
        fit = fit_variant(variant, labels, train_dir, val_dir, val_subset, placement, checkpoint_dir, log_dir,
                          fingerprint, ddp_timeout_minutes, checkpoint_minutes, files)
    if not fit.trainer.is_global_zero:
        return None
    chosen = chosen_epoch(read_tensors(Path(fit.best.best_model_path)))
    summary = {**run_summary(variant, fit, chosen, placement, cpus, mem_mb, val_dir, val_subset), "data": data}
    write_outputs(output_dir, checkpoint_dir, variant, labels, fit, chosen, summary, keep_checkpoints)
    return summary


def place_run(variant: Variant, cpus: int, allow_cpu_fallback: bool) -> Placement:
    """The accelerator, precision and processes of a run, each process's CPU share; seeds every
    generator and sets torch's threads."""
    accelerator = resolve_accelerator(variant.accelerator, variant.gpu, allow_cpu_fallback)
    pl.seed_everything(variant.seed, workers=True)
    precision = resolve_precision(variant.precision, accelerator)
    processes = variant.devices if accelerator == "gpu" or variant.accelerator == "cpu" else 1
    share = share_cpus(cpus, processes, accelerator)
    torch.set_num_threads(share.threads)
    return Placement(accelerator, precision, processes, share)


def fit_variant(variant: Variant, labels: list[dict], train_dir: Path, val_dir: Path, val_subset: str,
                placement: Placement, checkpoint_dir: Path, log_dir: Path, fingerprint: dict,
                ddp_timeout_minutes: float, checkpoint_minutes: float, files: dict[Path, SplitFiles] | None = None
                ) -> Fit:
    """The Lightning fit of one run, resumed from its checkpoint where the fingerprint allows."""
    data = SegmentationDataModule(train_dir, val_dir, variant, num_workers=placement.share.loader_workers,
                                  val_subset=val_subset, files=files)
    last, resumed_from = prepare_checkpoints(checkpoint_dir, log_dir, fingerprint)
    weights = (inverse_sqrt_frequency(class_pixels(train_dir, labels))
               if variant.class_weights == "inverse_sqrt_frequency" else None)
    module = SegmentationModule(variant, len(labels), weights)
    best, last_epoch = epoch_checkpoints(checkpoint_dir)
    with StopSignals() as signals:  # before the loader's workers start, which inherit it
        in_epoch = InEpochCheckpoint(Path(checkpoint_dir) / "last.ckpt", checkpoint_minutes, signals)
        trainer = _trainer(variant, placement.accelerator, placement.processes, placement.precision,
                           [best, last_epoch, in_epoch], log_dir, resumed_from, checkpoint_dir, ddp_timeout_minutes)
        seconds = _fit(trainer, module, data, last)
    return Fit(trainer, module, data, best, seconds, resumed_from)


def run_summary(variant: Variant, fit: Fit, chosen: dict, placement: Placement, cpus: int, mem_mb: int | None,
                val_dir: Path, val_subset: str) -> dict:
    """summary.json's content, but for the disk use `write_outputs` adds."""
    trainer, module, data, share = fit.trainer, fit.module, fit.data, placement.share
    accelerator, processes = placement.accelerator, placement.processes
    train_seconds = sum(row["seconds"] for row in module.history)
    return {
        "variant": variant.name,
        "seed": variant.seed,
        "config": variant.to_dict(),
        "epochs": trainer.current_epoch,
        "optimizer_steps": trainer.global_step,
        "best_epoch": chosen["epoch"],
        "best_val_miou": chosen["val_miou"],
        "selection": {"split": val_dir.name, "subset": val_subset, "images": len(data.val_set)},
        "train_seconds": train_seconds,
        "this_run_seconds": fit.seconds,
        "resumed_from_epoch": fit.resumed_from,
        "peak_memory_mb": peak_memory_mb(accelerator),
        "accelerator": accelerator,
        "gpu_requested": variant.gpu or variant.accelerator == "gpu",
        "device": device_name(accelerator),
        "precision": placement.precision,
        "processes": processes,
        "cpus": {"job": cpus, "per_process": share.cpus, "loader_workers": share.loader_workers,
                 "threads": share.threads},
        "memory_mb": {"job": mem_mb, "per_process": mem_mb / processes} if mem_mb else None,
        **training_cost(train_seconds, accelerator, processes, cpus),
        "params": count_parameters(module.model),
        "train_images": len(data.train_set),
        "val_images": len(data.val_set),
        "history": module.history,
    }


def write_outputs(output_dir: Path, checkpoint_dir: Path, variant: Variant, labels: list[dict], fit: Fit,
                  chosen: dict, summary: dict, keep_checkpoints: bool) -> None:
    """model.pt and summary.json, linked beside the checkpoints (`keep_finished`); then the
    checkpoints go unless kept: model.pt holds what a finished run hands on."""
    model = Path(output_dir) / "model.pt"
    last_state = {k: v.detach().cpu() for k, v in fit.module.model.state_dict().items()}
    save_model(model, variant, labels, chosen["state_dict"], chosen["epoch"], last_state, fit.trainer.current_epoch)
    summary["disk_mb"] = {"model": megabytes([model]),
                          "checkpoints": megabytes(checkpoint_files(checkpoint_dir)) if keep_checkpoints else 0}
    write_summary(output_dir, summary)
    keep_finished(output_dir, checkpoint_dir)
    if not keep_checkpoints:
        for path in checkpoint_files(checkpoint_dir):
            path.unlink()


def checkpoint_files(checkpoint_dir: Path) -> list[Path]:
    return sorted(Path(checkpoint_dir).glob("*.ckpt"))


def megabytes(paths: list[Path]) -> float:
    """The files' size in MiB."""
    return sum(path.stat().st_size for path in paths) / 2**20


def training_cost(seconds: float, accelerator: str, devices: int, cpus: int) -> dict:
    """Device-hours: wall time x GPUs on GPUs, x the CPU cores the job held on CPUs."""
    if accelerator == "gpu":
        return {"device_hours": seconds * devices / 3600, "device_hours_unit": "GPU-hours"}
    return {"device_hours": seconds * cpus / 3600, "device_hours_unit": "CPU core-hours"}
