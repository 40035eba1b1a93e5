"""Training one variant: Lightning fit with resumable checkpoints, then final weights + summary.

The checkpoint folder is not one of the workflow's declared outputs (Snakemake deletes those
before rerunning a job), so a killed job restarts with `fit(ckpt_path="last")` and continues.
The declared outputs, `model.pt` and `summary.json`, are written only at the very end.
"""

from __future__ import annotations

import os
import platform
import resource
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from pytorch_lightning.plugins.environments import LightningEnvironment, SLURMEnvironment

from .data import SegmentationDataModule, read_labels
from .files import InputError, atomic_path, write_json
from .model import SegmentationModule
from .variants import Variant


def resolve_accelerator(accelerator: str) -> str:
    """`auto` means the GPU when one is usable; a job given a GPU it cannot use falls back to CPU."""
    if accelerator == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if accelerator == "gpu" and not torch.cuda.is_available():
        warnings.warn("a GPU was asked for but CUDA is not usable here: training on the CPU")
        return "cpu"
    return accelerator


def resolve_precision(precision: str, accelerator: str) -> str:
    """`auto`: bf16-mixed on GPUs that have it, 16-mixed on older ones, 32 on the CPU."""
    if precision != "auto":
        return precision
    if accelerator == "gpu":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


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


def peak_memory_mb(accelerator: str) -> float:
    if accelerator == "gpu":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def device_name(accelerator: str) -> str:
    if accelerator == "gpu":
        return torch.cuda.get_device_name()
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def train(variant: Variant, train_dir: Path, val_dir: Path, output_dir: Path, checkpoint_dir: Path,
          log_dir: Path, workers: int) -> dict:
    """Train (or resume) one variant; writes `output_dir/model.pt` and `output_dir/summary.json`."""
    labels = read_labels(train_dir)
    if [r["category_id"] for r in read_labels(val_dir)] != [r["category_id"] for r in labels]:
        raise InputError(f"{val_dir}/labels.csv: differs from {train_dir}/labels.csv")
    num_classes = len(labels)
    pl.seed_everything(variant.seed, workers=True)
    # A variant that asked the scheduler for a GPU warns when it lands where CUDA is unusable.
    accelerator = resolve_accelerator("gpu" if variant.gpu and variant.accelerator == "auto" else variant.accelerator)
    precision = resolve_precision(variant.precision, accelerator)
    torch.set_num_threads(max(1, workers))

    data = SegmentationDataModule(train_dir, val_dir, variant.image_size, variant.batch_size,
                                  num_workers=min(workers, 4), seed=variant.seed)
    module = SegmentationModule(variant.architecture, variant.encoder, variant.encoder_weights, num_classes,
                                variant.lr, variant.weight_decay, variant.schedule, variant.warmup_epochs,
                                variant.dice_weight, variant.channels_last)
    last = Path(checkpoint_dir) / "last.ckpt"
    resumed_from = torch.load(last, map_location="cpu", weights_only=False)["epoch"] + 1 if last.exists() else 0
    # CSVLogger rewrites its file when a run resumes: each run segment gets its own folder.
    csv_version = f"csv-from-epoch-{resumed_from + 1}" if resumed_from else "csv"
    checkpoints = ModelCheckpoint(dirpath=checkpoint_dir, filename="best", monitor="val_miou", mode="max",
                                  save_last=True, save_top_k=1)
    plugins = cluster_environment(variant.devices if accelerator == "gpu" else 1)
    trainer = pl.Trainer(
        accelerator=accelerator, devices=variant.devices if accelerator == "gpu" else 1,
        precision=precision, max_epochs=variant.epochs, callbacks=[checkpoints],
        logger=[CSVLogger(log_dir, name="", version=csv_version),
                TensorBoardLogger(log_dir, name="", version="tensorboard")],
        plugins=plugins, deterministic="warn", log_every_n_steps=5, default_root_dir=checkpoint_dir,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        trainer.fit(module, datamodule=data, ckpt_path="last" if last.exists() else None)
    seconds = time.perf_counter() - start
    if trainer.interrupted:
        raise RuntimeError("training was interrupted; rerun to resume from the last checkpoint")

    best = torch.load(checkpoints.best_model_path, map_location="cpu", weights_only=False)
    history = module.history
    best_epoch = max(history, key=lambda row: row["val_miou"]) if history else {}
    summary = {
        "variant": variant.name,
        "config": variant.to_dict(),
        "epochs": trainer.current_epoch,
        "best_epoch": best_epoch.get("epoch"),
        "best_val_miou": best_epoch.get("val_miou"),
        "train_seconds": sum(row["seconds"] for row in history),
        "this_run_seconds": seconds,
        "resumed_from_epoch": resumed_from,
        "peak_memory_mb": peak_memory_mb(accelerator),
        "device": device_name(accelerator),
        "precision": precision,
        "params": count_parameters(module.model),
        "train_images": len(data.train_set),
        "val_images": len(data.val_set),
        "history": history,
    }
    state = {k.removeprefix("model."): v for k, v in best["state_dict"].items() if k.startswith("model.")}
    with atomic_path(Path(output_dir) / "model.pt") as tmp:
        torch.save({"variant": variant.to_dict(), "labels": labels, "state_dict": state}, tmp)
    write_json(Path(output_dir) / "summary.json", summary)
    return summary


def load_trained(path: Path, device: str = "cpu") -> tuple[torch.nn.Module, Variant, list[dict]]:
    """A `model.pt` written by `train`, ready for inference."""
    from .model import build_model

    try:
        saved = torch.load(path, map_location=device, weights_only=False)
    except (OSError, RuntimeError) as e:
        raise InputError(f"{path}: cannot load model: {e}") from None
    variant = Variant(**saved["variant"])
    model = build_model(variant.architecture, variant.encoder, None, len(saved["labels"]))
    model.load_state_dict(saved["state_dict"])
    return model.to(device).eval(), variant, saved["labels"]


def default_workers() -> int:
    return len(os.sched_getaffinity(0))
