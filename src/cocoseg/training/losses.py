"""Training losses by name: cross-entropy and segmentation_models_pytorch's losses, summed with
"+" (`ce+dice`, each term weighing 1 unless `loss_weights` says otherwise), every term ignoring label 255 and computed in fp32; class weights for the
cross-entropy term from the mask stage's pixel counts."""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch
from torch import nn

from cocoseg.shared.labels import IGNORE

TERMS = {
    "ce": lambda: nn.CrossEntropyLoss(ignore_index=IGNORE),
    "dice": lambda: smp.losses.DiceLoss("multiclass", ignore_index=IGNORE),
    "focal": lambda: smp.losses.FocalLoss("multiclass", ignore_index=IGNORE),
    "jaccard": lambda: smp.losses.JaccardLoss("multiclass", ignore_index=IGNORE),
    "lovasz": lambda: smp.losses.LovaszLoss("multiclass", ignore_index=IGNORE),
}


def inverse_sqrt_frequency(pixels: list[int]) -> list[float]:
    """Per-label weights of the cross-entropy term from each label's pixel count: 1 / sqrt(share
    of pixels), scaled to a mean of 1 over the labels that have pixels (rare classes count more,
    without the extremes of 1 / frequency); a label without pixels has no target and gets 0."""
    counts = torch.tensor(pixels, dtype=torch.float64)
    present = counts > 0
    raw = torch.zeros_like(counts)
    raw[present] = (counts[present] / counts.sum()).rsqrt()
    return (raw / raw[present].mean()).tolist()


class SegmentationLoss(nn.Module):
    """The weighted sum of the named terms: each weighs 1 unless `loss_weights` gives one number per
    term (`Variant` refuses a weight of 0, which would train the loss without that term)."""

    def __init__(self, loss: str, loss_weights: tuple[float, ...] | None = None,
                 class_weights: list[float] | None = None):
        super().__init__()
        names = loss.split("+")
        self.weights = list(loss_weights) if loss_weights else [1.0] * len(names)
        self.terms = nn.ModuleList(nn.CrossEntropyLoss(weight=torch.tensor(class_weights, dtype=torch.float32),
                                                       ignore_index=IGNORE)
                                   if name == "ce" and class_weights else TERMS[name]() for name in names)

    def forward(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        logits = logits.float()  # Dice sums overflow fp16 (SMP#463): losses in fp32
        return sum(weight * term(logits, masks) for weight, term in zip(self.weights, self.terms))
