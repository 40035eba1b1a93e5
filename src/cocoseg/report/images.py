"""Which images a ranking rests on, from the per-image counts: each variant's hardest images and
the images where the best two variants disagree most."""

from __future__ import annotations

import pandas as pd

from cocoseg.evaluation.per_image import PerImageCounts, image_miou, largest_disagreements
from cocoseg.report.plot_names import SHOWN_IMAGES


def hardest_images(counts: dict[str, list[PerImageCounts]], k: int = SHOWN_IMAGES) -> pd.DataFrame:
    """Per variant, its `k` images of lowest mIoU (mean over seeds)."""
    rows = []
    for variant, runs in counts.items():
        names, values = image_miou(runs)
        for name, value in pd.Series(values, index=names).nsmallest(k).items():
            rows.append({"variant": variant, "image": name, "image_miou": value})
    return pd.DataFrame(rows, columns=["variant", "image", "image_miou"])


def disagreements(best: str, runner_up: str, counts: dict[str, list[PerImageCounts]],
                  k: int = SHOWN_IMAGES) -> pd.DataFrame:
    """The `k` images whose mIoU differs most between `best` and `runner_up`, either way."""
    rows = largest_disagreements(counts[best], counts[runner_up], k)
    frame = pd.DataFrame(rows, columns=["image", best, runner_up])
    return frame.assign(difference=frame[best] - frame[runner_up])
