"""Which images a ranking rests on, from the per-image counts: each variant's hardest images and
the images where the best two variants disagree most."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..per_image import PerImageCounts
from .bootstrap import miou_from_sums

SHOWN_IMAGES = 5


def image_miou(runs: list[PerImageCounts]) -> pd.Series:
    """Each image's own mIoU (over the classes in its labels or predictions), mean over seeds,
    indexed by file name."""
    per_seed = [miou_from_sums(r.intersection.astype(float), r.union.astype(float)) for r in runs]
    order = [np.argsort(r.image_ids, kind="stable") for r in runs]
    values = np.nanmean([p[o] for p, o in zip(per_seed, order)], axis=0)
    return pd.Series(values, index=runs[0].file_names[order[0]])


def hardest_images(counts: dict[str, list[PerImageCounts]], k: int = SHOWN_IMAGES) -> pd.DataFrame:
    """Per variant, its `k` images of lowest mIoU."""
    rows = [{"variant": v, "image": name, "image_miou": value}
            for v, runs in counts.items() for name, value in image_miou(runs).nsmallest(k).items()]
    return pd.DataFrame(rows, columns=["variant", "image", "image_miou"])


def disagreements(best: str, runner_up: str, counts: dict[str, list[PerImageCounts]],
                  k: int = SHOWN_IMAGES) -> pd.DataFrame:
    """The `k` images whose mIoU differs most between `best` and `runner_up`, either way."""
    first, second = image_miou(counts[best]), image_miou(counts[runner_up])
    difference = (first - second.reindex(first.index)).dropna()
    chosen = difference.abs().sort_values(ascending=False, kind="stable").index[:k]
    return pd.DataFrame({"image": chosen, f"{best}": first[chosen].to_numpy(),
                         f"{runner_up}": second[chosen].to_numpy(), "difference": difference[chosen].to_numpy()})
