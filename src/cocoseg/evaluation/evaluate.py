"""Evaluation: a trained model scored over a whole split at each image's original size."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from cocoseg.evaluation.metrics_file import write_metrics, write_tables
from cocoseg.evaluation.per_image import FILE_NAME as PER_IMAGE_FILE
from cocoseg.evaluation.per_image import image_counts, write_per_image
from cocoseg.evaluation.predictor import Predictor, in_order, inference_device
from cocoseg.masks.split_folder import label_map_difference, read_labels, read_manifest
from cocoseg.shared.colours import palette
from cocoseg.shared.confusion import confusion_matrix
from cocoseg.shared.errors import InputError
from cocoseg.shared.files import atomic_path
from cocoseg.shared.hardware import peak_memory_mb
from cocoseg.shared.metrics import scores
from cocoseg.shared.progress import CountLines
from cocoseg.training.network import count_parameters
from cocoseg.training.samples import SplitFiles, read_sample
from cocoseg.training.split_sources import ReadFrom, opened_splits
from cocoseg.training.summary_file import SUMMARY_FILE, read_summary


class SplitSamples(Dataset):
    """Rows of a split with their image and mask at original size, read in loader workers."""

    def __init__(self, files: SplitFiles, rows: list[dict]):
        self.files, self.rows = files, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[dict, np.ndarray, np.ndarray]:
        return (self.rows[index], *read_sample(self.files, self.rows[index]))


def check_label_maps(model_path: Path, model_labels: list[dict], split_dir: Path) -> None:
    """A model scores only a split labelled with its own map: label 3 must mean the same class."""
    if difference := label_map_difference(model_labels, read_labels(split_dir), ("the model", "the split")):
        raise InputError(f"{model_path} and {Path(split_dir) / 'labels.csv'}: label maps differ ({difference}); "
                         f"evaluate on a split made with the same classes (mask stage --classes)")


def _score(predictor: Predictor, files: SplitFiles, rows: list[dict], workers: int,
           panels: tuple[Path, int] | None = None) -> tuple[torch.Tensor, float, list]:
    """Confusion matrix of `predictor` over the split, the seconds spent in the model, and each
    image's (intersection, labelled, predicted) counts per class, in manifest order.

    `panels` (folder, count): the first `count` images get an image | truth | prediction panel.
    """
    num_classes = len(predictor.labels)
    colours = palette(predictor.labels)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    seconds, per_image = 0.0, []
    progress = CountLines(f"{Path(files.split_dir).name}, {predictor.epoch_name} epoch", len(rows))
    for index, (row, image, truth) in enumerate(in_order(SplitSamples(files, rows), workers)):
        progress.step()
        predictor.synchronize()
        start = time.perf_counter()
        prediction = predictor(image)
        predictor.synchronize()
        seconds += time.perf_counter() - start
        image_confusion = confusion_matrix(torch.from_numpy(truth), torch.from_numpy(prediction), num_classes)
        confusion += image_confusion
        per_image.append(image_counts(image_confusion.numpy()))
        if panels and index < panels[1]:
            panel = np.concatenate([image, colours.overlay(image, truth), colours.overlay(image, prediction)], axis=1)
            with atomic_path(panels[0] / f"{Path(row['mask']).stem}.png") as tmp:
                Image.fromarray(panel).save(tmp, format="PNG")
    return confusion, seconds, per_image


def evaluate(model_path: Path, split_dir: Path, output_dir: Path, samples: int = 6, cpus: int = 1,
             gpu_requested: bool = False, allow_cpu_fallback: bool = False, tta: tuple[str, ...] = (),
             mode: str = "whole", stride: tuple[int, int] | None = None, subset: str = "all",
             read_from: ReadFrom = ReadFrom()) -> dict:
    """Metrics over the whole split at original resolution; writes metrics.json, per_class.csv,
    confusion.csv, per_image.npz and sample panels (image | ground truth | prediction).

    The chosen epoch's weights are scored and timed; the last epoch's are scored too, so the
    report can show how much choosing the epoch mattered. `tta` ("flip"): the chosen epoch is
    scored once more with flip-averaged logits (`miou_flip`, ...), beside the plain score.
    `mode`, `stride`: whole-image or sliding-window inference (`Predictor`). `subset`: the
    split's images to score (`holdout`: the selection images the workflow chooses the winner on).
    `read_from`: the split folder's files, or its packed parts (staged or not).
    """
    device, workers = inference_device(cpus, gpu_requested, allow_cpu_fallback)
    predictor = Predictor(model_path, device, mode=mode, stride=stride)
    check_label_maps(model_path, predictor.labels, split_dir)
    with opened_splits([split_dir], read_from) as (opened, data):
        files = opened[Path(split_dir)]
        rows = read_manifest(split_dir, subset)
        files.check(rows)
        output_dir = Path(output_dir)
        for stale in (output_dir / "samples").glob("*.png"):  # panels of an earlier evaluation here
            stale.unlink()
        confusion, seconds, per_image, peak_memory = _score_timed(predictor, files, rows, workers,
                                                                  (output_dir / "samples", samples))
        result = scores(confusion)
        last = Predictor(model_path, device, epoch="last", mode=mode, stride=stride)
        last_result = scores(_score(last, files, rows, workers)[0])
        flipped = scores(_score(Predictor(model_path, device, flip=True, mode=mode, stride=stride), files, rows,
                                workers)[0]) if "flip" in tta else None
    metrics = {
        "variant": predictor.variant.name,
        "seed": predictor.variant.seed,
        "split": Path(split_dir).name,
        "subset": subset,
        "images": len(rows),
        "epoch": predictor.epoch,
        "miou": result["miou"],
        "mdice": result["mdice"],
        "pixel_accuracy": result["pixel_accuracy"],
        "last_epoch": last.epoch,
        "last_epoch_miou": last_result["miou"],
        "params": count_parameters(predictor.model),
        "inference_images_per_s": len(rows) / seconds,
        "inference_peak_memory_mb": peak_memory,
        "device": device,
        "image_size": list(predictor.variant.image_size),
        "mode": mode if mode == "whole" else f"slide, stride {predictor.stride[0]}x{predictor.stride[1]}",
        "inference": {**predictor.inference(), "tta": list(tta)},
        "train_seconds": training_seconds(model_path),
        "data": data,
    }
    if flipped:
        metrics.update(miou_flip=flipped["miou"], mdice_flip=flipped["mdice"],
                       pixel_accuracy_flip=flipped["pixel_accuracy"])
    write_evaluation(output_dir, predictor.labels, rows, result, confusion, per_image, metrics)
    return metrics


def _score_timed(predictor: Predictor, files: SplitFiles, rows: list[dict], workers: int,
                 panels: tuple[Path, int]) -> tuple[torch.Tensor, float, list, float]:
    """`_score` after one untimed warm-up image, with the peak memory it took."""
    predictor(read_sample(files, rows[0])[0])
    if predictor.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    confusion, seconds, per_image = _score(predictor, files, rows, workers, panels)
    return confusion, seconds, per_image, peak_memory_mb("gpu" if predictor.device == "cuda" else "cpu")


def training_seconds(model_path: Path) -> float | None:
    """The training time `cocoseg train` recorded beside model.pt, where it did."""
    summary = Path(model_path).with_name(SUMMARY_FILE)
    return read_summary(summary)["train_seconds"] if summary.exists() else None


def write_evaluation(output_dir: Path, labels: list[dict], rows: list[dict], result: dict, confusion: torch.Tensor,
                     per_image: list, metrics: dict) -> None:
    """The tables, per-image counts and metrics.json, the last written last (the job's declared output)."""
    write_tables(output_dir, labels, result, confusion.numpy())
    write_per_image(output_dir / PER_IMAGE_FILE, [int(row["image_id"]) for row in rows],
                    [row["file_name"] for row in rows], per_image)
    (output_dir / "samples").mkdir(parents=True, exist_ok=True)
    write_metrics(output_dir, metrics)
