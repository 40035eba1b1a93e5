"""Colours of labels in pictures: sample panels, prediction overlays and their legends."""

from __future__ import annotations

import colorsys

import numpy as np


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
