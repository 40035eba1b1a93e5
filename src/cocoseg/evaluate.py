"""Evaluation at each image's original size, and prediction on any folder of images."""

from __future__ import annotations

import colorsys
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .common import InputError
from .data import as_tensor, check_files_exist, eval_transform, load_sample, normalize, read_manifest
from .devices import count_parameters, peak_memory_mb, resolve_accelerator
from .files import atomic_path, write_bytes, write_csv, write_json
from .images import load_rgb
from .metrics import confusion_matrix, scores
from .modelfile import load_trained
from .png import encode_mask_png

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def palette(num_classes: int) -> np.ndarray:
    """Colour per label: background black, classes spread over hues, ignore (255) white."""
    colours = np.full((256, 3), 255, dtype=np.uint8)
    colours[0] = 0
    for label in range(1, num_classes):
        hue = (label * 0.618033988749895) % 1.0
        colours[label] = [round(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.75, 0.95)]
    return colours


def overlay(image: np.ndarray, mask: np.ndarray, colours: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    painted = colours[mask].astype(np.float32)
    blend = np.where((mask > 0)[..., None], (1 - alpha) * image + alpha * painted, image)
    return blend.astype(np.uint8)


class Predictor:
    """Resize to the variant's size, run the model, and bring logits back to the original size."""

    def __init__(self, model_path: Path, threads: int = 1, epoch: str = "chosen"):
        torch.set_num_threads(max(1, threads))
        self.device = "cuda" if resolve_accelerator("auto") == "gpu" else "cpu"
        self.model, self.variant, self.labels, self.epoch = load_trained(model_path, self.device, epoch)
        self.transform = eval_transform(self.variant.image_size)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        scale = max(self.variant.image_size) / max(height, width)
        resized = (round(height * scale), round(width * scale))
        tensor = normalize(as_tensor(self.transform(image=image)["image"])[None].to(self.device)).contiguous()
        with torch.inference_mode():
            logits = self.model(tensor)[:, :, : resized[0], : resized[1]]
            logits = F.interpolate(logits.float(), size=(height, width), mode="bilinear", align_corners=False)
            return logits.argmax(dim=1)[0].to(torch.uint8).cpu().numpy()

    def synchronize(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()


class SplitSamples(Dataset):
    """Rows of a split with their image and mask at original size, read in loader workers."""

    def __init__(self, split_dir: Path, rows: list[dict]):
        self.split_dir, self.rows = Path(split_dir), rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[dict, np.ndarray, np.ndarray]:
        return (self.rows[index], *load_sample(self.split_dir, self.rows[index]))


def _as_is(sample):
    return sample


def _images_and_masks(split_dir: Path, rows: list[dict], workers: int):
    """Decoding in `workers` processes overlaps inference; samples come in manifest order."""
    return DataLoader(SplitSamples(split_dir, rows), batch_size=None, num_workers=workers, collate_fn=_as_is,
                      prefetch_factor=4 if workers else None)


def evaluate(model_path: Path, split_dir: Path, output_dir: Path, samples: int = 6, threads: int = 1) -> dict:
    """Metrics over the whole split at original resolution; writes metrics.json, per_class.csv,
    confusion.csv and sample panels (image | ground truth | prediction).

    The chosen epoch's weights are scored and timed; the last epoch's are scored too, so the
    report can show how much choosing the epoch mattered.
    """
    predictor = Predictor(model_path, threads)
    num_classes = len(predictor.labels)
    rows = read_manifest(split_dir)
    check_files_exist(split_dir, rows)
    colours = palette(num_classes)
    output_dir = Path(output_dir)
    for stale in (output_dir / "samples").glob("*.png"):  # panels of an earlier evaluation here
        stale.unlink()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    predictor(load_sample(split_dir, rows[0])[0])  # warm-up, not timed
    if predictor.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = 0.0
    for index, (row, image, truth) in enumerate(_images_and_masks(split_dir, rows, threads)):
        predictor.synchronize()
        start = time.perf_counter()
        prediction = predictor(image)
        predictor.synchronize()
        seconds += time.perf_counter() - start
        confusion += confusion_matrix(torch.from_numpy(truth), torch.from_numpy(prediction), num_classes)
        if index < samples:
            panel = np.concatenate([image, overlay(image, truth, colours), overlay(image, prediction, colours)], axis=1)
            with atomic_path(output_dir / "samples" / f"{Path(row['mask']).stem}.png") as tmp:
                Image.fromarray(panel).save(tmp, format="PNG")
    result = scores(confusion)
    peak_memory = peak_memory_mb("gpu" if predictor.device == "cuda" else "cpu")
    last = Predictor(model_path, threads, epoch="last")
    last_confusion = torch.zeros_like(confusion)
    for _, image, truth in _images_and_masks(split_dir, rows, threads):
        last_confusion += confusion_matrix(torch.from_numpy(truth), torch.from_numpy(last(image)), num_classes)
    last_result = scores(last_confusion)
    summary = Path(model_path).with_name("summary.json")  # written beside model.pt by `cocoseg train`
    train_seconds = json.loads(summary.read_text())["train_seconds"] if summary.exists() else None
    metrics = {
        "variant": predictor.variant.name,
        "seed": predictor.variant.seed,
        "split": Path(split_dir).name,
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
        "device": predictor.device,
        "image_size": list(predictor.variant.image_size),
        "train_seconds": train_seconds,
    }
    per_class = [[label["label"], label["category_id"], label["name"], _round(result["iou"][i]),
                  _round(result["dice"][i]), int(result["labelled_pixels"][i]), int(result["predicted_pixels"][i])]
                 for i, label in enumerate(predictor.labels)]
    write_csv(output_dir / "per_class.csv",
              ["label", "category_id", "name", "iou", "dice", "label_pixels", "predicted_pixels"], per_class)
    write_csv(output_dir / "confusion.csv", ["label", *range(num_classes)],
              [[i, *confusion[i].tolist()] for i in range(num_classes)])
    (output_dir / "samples").mkdir(parents=True, exist_ok=True)
    write_json(output_dir / "metrics.json", metrics)
    return metrics


def _round(value: float) -> float | str:
    return "" if np.isnan(value) else round(float(value), 6)


def predict(model_path: Path, images_dir: Path, output_dir: Path, threads: int = 1) -> tuple[int, int]:
    """Masks and overlays for every image in a folder (recursively); returns (written, skipped).

    An unreadable image, or one above the pixel limit, is skipped with its reason on stderr.
    """
    images_dir, output_dir = Path(images_dir), Path(output_dir)
    if not images_dir.is_dir():
        raise InputError(f"{images_dir}: image folder not found")
    if images_dir.resolve() == output_dir.resolve() or images_dir.resolve() in output_dir.resolve().parents:
        raise InputError(f"{output_dir}: inside the image folder {images_dir}; a rerun would read its own output")
    predictor = Predictor(model_path, threads)
    colours = palette(len(predictor.labels))
    paths = sorted(p for p in Path(images_dir).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    skipped = 0
    for path in paths:
        relative = path.relative_to(images_dir).with_suffix(".png")
        try:
            image = load_rgb(path)
        except InputError as e:
            print(f"skipped {e}", file=sys.stderr)
            skipped += 1
            continue
        except OSError as e:
            print(f"skipped {path}: unreadable ({e})", file=sys.stderr)
            skipped += 1
            continue
        prediction = predictor(image)
        write_bytes(Path(output_dir) / "masks" / relative, encode_mask_png(prediction))
        with atomic_path(Path(output_dir) / "overlays" / relative) as tmp:
            Image.fromarray(overlay(image, prediction, colours)).save(tmp, format="PNG")
    return len(paths) - skipped, skipped
