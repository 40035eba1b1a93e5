"""Colours of labels in pictures: sample panels, prediction overlays and their legends."""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

from cocoseg.shared.labels import BACKGROUND, has_background


@dataclass(frozen=True)
class Palette:
    """A colour per label value: background (where the split has one) black and left unpainted in
    overlays, classes spread over hues, ignore (255) white."""

    colours: np.ndarray  # (256, 3) uint8
    background: bool

    def overlay(self, image: np.ndarray, mask: np.ndarray, alpha: float = 0.55) -> np.ndarray:
        """The image with every label's colour blended in, background left as it is."""
        painted = self.colours[mask].astype(np.float32)
        shown = mask != BACKGROUND if self.background else np.ones(mask.shape, dtype=bool)
        return np.where(shown[..., None], (1 - alpha) * image + alpha * painted, image).astype(np.uint8)


def palette(labels: list[dict]) -> Palette:
    """The palette of a label map (rows of a labels.csv)."""
    background = has_background(labels)
    colours = np.full((256, 3), 255, dtype=np.uint8)
    colours[BACKGROUND] = 0
    for label in range(1 if background else 0, len(labels)):
        hue = (label * 0.618033988749895) % 1.0
        colours[label] = [round(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.75, 0.95)]
    return Palette(colours, background)
