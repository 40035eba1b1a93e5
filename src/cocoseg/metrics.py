"""Segmentation metrics over a whole split, from one confusion matrix.

Per-batch averages of IoU depend on batch size and order (torchmetrics#552, SMP#330); summing
pixel counts over the split and dividing once does not. Classes absent from both labels and
predictions are NaN and left out of the means; pixels labelled 255 are ignored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .common import IGNORE

if TYPE_CHECKING:
    import torch


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts[label, prediction] over the pixels whose label is not 255, as int64."""
    import torch  # here: the report, which reads counts, runs without torch

    keep = labels != IGNORE
    labels, predictions = labels[keep].long(), predictions[keep].long()
    if labels.numel() and (labels.max() >= num_classes or labels.min() < 0):
        raise ValueError(f"label {int(labels.max())} out of range for {num_classes} classes")
    index = labels * num_classes + predictions
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def mean_iou(intersection: np.ndarray, union: np.ndarray) -> np.ndarray:
    """Mean IoU over the last axis from summed counts, leaving out classes with an empty union
    (neither labelled nor predicted); vectorised over any leading axes (the report's resamples)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, intersection / np.where(union > 0, union, 1), np.nan)
    present = (union > 0).sum(axis=-1)
    return np.where(present > 0, np.nansum(np.nan_to_num(iou), axis=-1) / np.maximum(present, 1), np.nan)


def scores(confusion: np.ndarray | torch.Tensor) -> dict:
    """IoU and Dice per class, their NaN-means, and pixel accuracy, from summed counts."""
    cm = np.asarray(confusion.cpu() if hasattr(confusion, "cpu") else confusion, dtype=np.float64)
    intersection = np.diag(cm)
    labelled = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    union = labelled + predicted - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, intersection / union, np.nan)
        dice = np.where(labelled + predicted > 0, 2 * intersection / (labelled + predicted), np.nan)
        accuracy = intersection.sum() / labelled.sum() if labelled.sum() else float("nan")
    present = ~np.isnan(iou)
    return {
        "iou": iou,
        "dice": dice,
        "miou": float(mean_iou(intersection, union)),
        "mdice": float(np.nanmean(dice)) if present.any() else float("nan"),
        "pixel_accuracy": float(accuracy),
        "labelled_pixels": labelled,
        "predicted_pixels": predicted,
    }
