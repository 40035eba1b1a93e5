"""Evaluation at each image's original size, and the predictor it shares with prediction."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from cocoseg.evaluation.metrics_file import write_metrics, write_tables
from cocoseg.evaluation.per_image import FILE_NAME as PER_IMAGE_FILE
from cocoseg.evaluation.per_image import image_counts, write_per_image
from cocoseg.masks.split_folder import label_map_difference, read_labels
from cocoseg.shared.colours import overlay, palette
from cocoseg.shared.confusion import confusion_matrix
from cocoseg.shared.errors import InputError
from cocoseg.shared.files import atomic_path
from cocoseg.shared.hardware import count_parameters, peak_memory_mb, resolve_accelerator, share_cpus
from cocoseg.shared.metrics import scores
from cocoseg.shared.progress import CountLines
from cocoseg.training.data import (
    as_tensor,
    check_files_exist,
    inference_input,
    load_sample,
    normalize,
    read_manifest,
    resize_image,
    worker_start,
)
from cocoseg.training.model_file import load_trained
from cocoseg.training.network import input_divisor
from cocoseg.training.scaling import base_length, inference_size
from cocoseg.training.summary_file import SUMMARY_FILE, read_summary


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Where windows of `window` pixels start along a side of `length` so that every pixel is
    covered: every `stride`, and one flush with the end (a side shorter than the window is padded)."""
    last = max(length - window, 0)
    return sorted(set(range(0, last + 1, stride)) | {last})


class Predictor:
    """Run the model on an image and give a mask at the image's original size.

    The image is first brought to the scale the variant trained at (`scaling.inference_size`).
    `mode` "whole": run once on it, padded bottom-right only as far as `scaling.padded_size`
    asks, and scale the logits back. `mode` "slide": windows of the variant's size over it, every
    `stride` pixels (default two thirds of the window), logits averaged where windows overlap,
    for images much larger than the training crops. `flip`: average the logits of each input and
    of its horizontal mirror (flipped back), the test-time augmentation model zoos report beside
    the plain score. `inference()` says which of these it runs, as metrics.json records it.
    """

    def __init__(self, model_path: Path, device: str, epoch: str = "chosen", flip: bool = False,
                 mode: str = "whole", stride: tuple[int, int] | None = None):
        self.device = device
        self.model, self.variant, self.labels, self.epoch = load_trained(model_path, self.device, epoch)
        self.epoch_name = epoch + (", flip" if flip else "")
        self.flip, self.mode = flip, mode
        self.stride = tuple(stride or (max(1, side * 2 // 3) for side in self.variant.image_size))
        self.divisor = input_divisor(self.variant.architecture, self.variant.encoder)

    def inference(self) -> dict:
        """How this predictor infers, in the words metrics.json and best.json keep."""
        v = self.variant
        return {"mode": self.mode, "stride": list(self.stride) if self.mode == "slide" else None,
                "tta": ["flip"] if self.flip else [], "resize": v.resize,
                "base_short_side": base_length(v) if v.resize == "short_side" else None}

    def logits(self, tensor: torch.Tensor) -> torch.Tensor:
        logits = self.model(tensor)
        return (logits + self.model(tensor.flip(-1)).flip(-1)) / 2 if self.flip else logits

    def __call__(self, image: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            logits = self._slide(image) if self.mode == "slide" else self._whole(image)
            return logits.argmax(dim=1)[0].to(torch.uint8).cpu().numpy()

    def _whole(self, image: np.ndarray) -> torch.Tensor:
        height, width = image.shape[:2]
        padded, (scaled_h, scaled_w) = inference_input(image, self.variant, self.divisor)
        tensor = normalize(as_tensor(padded)[None].to(self.device)).contiguous()
        logits = self.logits(tensor)[:, :, :scaled_h, :scaled_w]
        return F.interpolate(logits.float(), size=(height, width), mode="bilinear", align_corners=False)

    def _slide(self, image: np.ndarray) -> torch.Tensor:
        height, width = image.shape[:2]
        scaled_h, scaled_w = inference_size(height, width, self.variant)
        (window_h, window_w), (stride_h, stride_w) = self.variant.image_size, self.stride
        tensor = normalize(as_tensor(resize_image(image, (scaled_h, scaled_w)))[None].to(self.device))
        tensor = F.pad(tensor, (0, max(0, window_w - scaled_w), 0, max(0, window_h - scaled_h)))
        total = torch.zeros((1, len(self.labels), *tensor.shape[2:]), device=self.device)
        counts = torch.zeros((1, 1, *tensor.shape[2:]), device=self.device)
        for top in window_starts(scaled_h, window_h, stride_h):
            for left in window_starts(scaled_w, window_w, stride_w):
                crop = tensor[:, :, top: top + window_h, left: left + window_w].contiguous()
                total[:, :, top: top + window_h, left: left + window_w] += self.logits(crop).float()
                counts[:, :, top: top + window_h, left: left + window_w] += 1
        logits = (total / counts)[:, :, :scaled_h, :scaled_w]
        return F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)

    def synchronize(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()


WHOLE = {"mode": "whole", "stride": None, "tta": []}  # the inference when nothing else is said


def scored_predictor(model_path: Path, device: str, inference: dict | None = None) -> Predictor:
    """The predictor that infers as `inference` says (metrics.json's and best.json's record: mode,
    stride, tta), flip included when it was scored: what a user gets is what the report scored."""
    inference = inference or WHOLE
    stride = tuple(inference["stride"]) if inference.get("stride") else None
    return Predictor(model_path, device, flip="flip" in inference.get("tta", []), mode=inference["mode"],
                     stride=stride)


def inference_device(cpus: int, gpu_requested: bool = False, allow_cpu_fallback: bool = False) -> tuple[str, int]:
    """The torch device one inference process runs on, and its loader workers; sets its threads."""
    accelerator = resolve_accelerator("auto", gpu_requested, allow_cpu_fallback)
    share = share_cpus(cpus, 1, accelerator)
    torch.set_num_threads(share.threads)
    return ("cuda" if accelerator == "gpu" else "cpu"), share.loader_workers


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


def in_order(samples: Dataset, workers: int) -> DataLoader:
    """The samples one at a time and in order, decoded in `workers` processes (which end with
    this one) so that decoding overlaps inference."""
    return DataLoader(samples, batch_size=None, num_workers=workers, collate_fn=_as_is,
                      prefetch_factor=4 if workers else None, worker_init_fn=worker_start if workers else None)


def check_label_maps(model_path: Path, model_labels: list[dict], split_dir: Path) -> None:
    """A model scores only a split labelled with its own map: label 3 must mean the same class."""
    if difference := label_map_difference(model_labels, read_labels(split_dir), ("the model", "the split")):
        raise InputError(f"{model_path} and {Path(split_dir) / 'labels.csv'}: label maps differ ({difference}); "
                         f"evaluate on a split made with the same classes (mask stage --classes)")


def _score(predictor: Predictor, split_dir: Path, rows: list[dict], workers: int,
           panels: tuple[Path, int] | None = None) -> tuple[torch.Tensor, float, list]:
    """Confusion matrix of `predictor` over the split, the seconds spent in the model, and each
    image's (intersection, labelled, predicted) counts per class, in manifest order.

    `panels` (folder, count): the first `count` images get an image | truth | prediction panel.
    """
    num_classes = len(predictor.labels)
    colours = palette(num_classes)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    seconds, per_image = 0.0, []
    progress = CountLines(f"{Path(split_dir).name}, {predictor.epoch_name} epoch", len(rows))
    for index, (row, image, truth) in enumerate(in_order(SplitSamples(split_dir, rows), workers)):
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
            panel = np.concatenate([image, overlay(image, truth, colours), overlay(image, prediction, colours)], axis=1)
            with atomic_path(panels[0] / f"{Path(row['mask']).stem}.png") as tmp:
                Image.fromarray(panel).save(tmp, format="PNG")
    return confusion, seconds, per_image


def evaluate(model_path: Path, split_dir: Path, output_dir: Path, samples: int = 6, cpus: int = 1,
             gpu_requested: bool = False, allow_cpu_fallback: bool = False, tta: tuple[str, ...] = (),
             mode: str = "whole", stride: tuple[int, int] | None = None, subset: str = "all") -> dict:
    """Metrics over the whole split at original resolution; writes metrics.json, per_class.csv,
    confusion.csv, per_image.npz and sample panels (image | ground truth | prediction).

    The chosen epoch's weights are scored and timed; the last epoch's are scored too, so the
    report can show how much choosing the epoch mattered. `tta` ("flip"): the chosen epoch is
    scored once more with flip-averaged logits (`miou_flip`, ...), beside the plain score.
    `mode`, `stride`: whole-image or sliding-window inference (`Predictor`). `subset`: the
    split's images to score (`holdout`: the selection images the workflow chooses the winner on).
    """
    device, workers = inference_device(cpus, gpu_requested, allow_cpu_fallback)
    predictor = Predictor(model_path, device, mode=mode, stride=stride)
    check_label_maps(model_path, predictor.labels, split_dir)
    rows = read_manifest(split_dir, subset)
    check_files_exist(split_dir, rows)
    output_dir = Path(output_dir)
    for stale in (output_dir / "samples").glob("*.png"):  # panels of an earlier evaluation here
        stale.unlink()
    predictor(load_sample(split_dir, rows[0])[0])  # warm-up, not timed
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    confusion, seconds, per_image = _score(predictor, split_dir, rows, workers, (output_dir / "samples", samples))
    peak_memory = peak_memory_mb("gpu" if device == "cuda" else "cpu")
    result = scores(confusion)
    last = Predictor(model_path, device, epoch="last", mode=mode, stride=stride)
    last_result = scores(_score(last, split_dir, rows, workers)[0])
    flipped = scores(_score(Predictor(model_path, device, flip=True, mode=mode, stride=stride), split_dir, rows,
                            workers)[0]) \
        if "flip" in tta else None
    summary = Path(model_path).with_name(SUMMARY_FILE)  # written beside model.pt by `cocoseg train`
    train_seconds = read_summary(summary)["train_seconds"] if summary.exists() else None
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
        "train_seconds": train_seconds,
    }
    if flipped:
        metrics.update(miou_flip=flipped["miou"], mdice_flip=flipped["mdice"],
                       pixel_accuracy_flip=flipped["pixel_accuracy"])
    write_tables(output_dir, predictor.labels, result, confusion.numpy())
    write_per_image(output_dir / PER_IMAGE_FILE, [int(row["image_id"]) for row in rows],
                    [row["file_name"] for row in rows], per_image)
    (output_dir / "samples").mkdir(parents=True, exist_ok=True)
    write_metrics(output_dir, metrics)
    return metrics
