"""Counting (label, prediction) pixel pairs on the device, the counts every metric comes from
(`metrics.scores`); pixels labelled 255 are ignored."""

from __future__ import annotations

import torch

from cocoseg.shared.labels import IGNORE


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts[label, prediction] over the pixels whose label is not 255, as int64."""
    keep = labels != IGNORE
    labels, predictions = labels[keep].long(), predictions[keep].long()
    if labels.numel() and (labels.max() >= num_classes or labels.min() < 0):
        raise ValueError(f"label {int(labels.max())} out of range for {num_classes} classes")
    index = labels * num_classes + predictions
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
