"""Segmentation metrics over a whole split, from one confusion matrix (counted by `confusion`).

Per-batch averages of IoU depend on batch size and order (torchmetrics#552, SMP#330); summing
pixel counts over the split and dividing once does not. Classes absent from both labels and
predictions are NaN and left out of the means. NumPy only: the report, which runs without torch,
scores resamples of counts with `mean_iou`.
"""

from __future__ import annotations

import numpy as np


def mean_iou(intersection: np.ndarray, union: np.ndarray) -> np.ndarray:
    """Mean IoU over the last axis from summed counts, leaving out classes with an empty union
    (neither labelled nor predicted); vectorised over any leading axes (the report's resamples)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, intersection / np.where(union > 0, union, 1), np.nan)
    present = (union > 0).sum(axis=-1)
    return np.where(present > 0, np.nansum(np.nan_to_num(iou), axis=-1) / np.maximum(present, 1), np.nan)


def scores(confusion) -> dict:
    """IoU and Dice per class, their NaN-means, and pixel accuracy, from summed counts (a NumPy
    array, or a torch tensor on any device)."""
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
