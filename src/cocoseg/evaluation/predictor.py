"""The one predictor of a trained model: evaluation, prediction, the report's top-two pictures and
the export check's reference all infer through it, at the scale the variant trained at, so a
model is used as it was scored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from cocoseg.shared.hardware import resolve_accelerator, share_cpus
from cocoseg.training.data import worker_start
from cocoseg.training.model_file import load_trained
from cocoseg.training.network import input_divisor
from cocoseg.training.scaling import base_length, inference_size
from cocoseg.training.transforms import as_tensor, inference_input, normalize, resize_image


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


def _as_is(sample):
    return sample


def in_order(samples: Dataset, workers: int) -> DataLoader:
    """The samples one at a time and in order, decoded in `workers` processes (which end with
    this one) so that decoding overlaps inference."""
    return DataLoader(samples, batch_size=None, num_workers=workers, collate_fn=_as_is,
                      prefetch_factor=4 if workers else None, worker_init_fn=worker_start if workers else None)
