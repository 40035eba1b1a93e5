"""Is the lead real? A paired bootstrap over the images of a split and over each variant's seeds.

Each resample draws the split's images with replacement, the same draw for every variant
(paired: a hard image is hard for all of them), and recomputes every run's dataset-level mIoU
from the summed per-image counts (`per_image.npz`). Seeds enter as a second level: each
resample also draws each variant's seeds with replacement and averages the variant's mIoU over
the drawn seeds, so the interval carries both which images were scored and which seeds were
trained. A variant is distinguishable from the best when the interval of its difference from
the best excludes 0.

All resamples at once: one matrix product of resample weights (resamples x images) with the
stacked counts (images x runs x classes).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cocoseg.evaluation.per_image import PerImageCounts
from cocoseg.shared.metrics import mean_iou

LEVEL = 0.95
RESAMPLES = 1000
SEED = 0
COLUMNS = ["split", "variant", "images", "seeds", "miou", "miou_low", "miou_high", "diff_from_best", "diff_low",
           "diff_high", "distinguishable_from_best", "note"]


def resample_weights(images: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """How often each image is drawn in each resample (resamples x images)."""
    draws = rng.integers(0, images, size=(resamples, images)) + images * np.arange(resamples)[:, None]
    return np.bincount(draws.ravel(), minlength=resamples * images).reshape(resamples, images)


def _aligned(runs: list[PerImageCounts], reference: np.ndarray) -> list[PerImageCounts] | None:
    """`runs` with their images in `reference` order, or None when a run scored other images."""
    aligned = []
    for run in runs:
        if len(run.image_ids) != len(reference) or set(run.image_ids.tolist()) != set(reference.tolist()):
            return None
        order = np.argsort(run.image_ids, kind="stable")[np.argsort(np.argsort(reference, kind="stable"))]
        aligned.append(PerImageCounts(run.image_ids[order], run.file_names[order], run.intersection[order],
                                      run.labelled[order], run.predicted[order]))
    return aligned


def paired_bootstrap(split: str, counts: dict[str, list[PerImageCounts] | None], resamples: int, seed: int,
                     best: str | None = None) -> pd.DataFrame:
    """One row per variant of `split`: mIoU (mean over seeds of the split's mIoU) with its
    interval, its difference from `best` with that interval, and a note where an interval could
    not be computed. `counts`: variant -> one `PerImageCounts` per seed, or None where a run has
    no per-image file. `best`: the variant the others are compared with (default: the highest
    mIoU here; the report passes its own ranking's)."""
    rows = {v: {"split": split, "variant": v, "images": np.nan, "seeds": len(c) if c else 0, "note": ""}
            for v, c in counts.items()}
    usable = {v: c for v, c in counts.items() if c}
    for v in set(counts) - set(usable):
        rows[v]["note"] = "no per-image counts (per_image.npz) for every seed: no interval"
    if usable:
        reference = next(iter(usable.values()))[0].image_ids
        for v in list(usable):
            if (aligned := _aligned(usable[v], reference)) is None:
                rows[v]["note"] = "scored other images than the other variants: no paired interval"
                del usable[v]
            else:
                usable[v] = aligned
    for v, runs in usable.items():
        intersection, union = zip(*[(r.intersection.sum(axis=0), r.union.sum(axis=0)) for r in runs])
        rows[v].update(images=len(reference), miou=float(np.mean(mean_iou(np.array(intersection),
                                                                                np.array(union)))))
        if len(runs) == 1:
            rows[v]["note"] = "one seed: the interval covers images only"
    if usable:
        _intervals(usable, rows, resamples, seed, best if best in usable else None)
    return pd.DataFrame(list(rows.values()), columns=COLUMNS).sort_values(
        "miou", ascending=False, kind="stable", na_position="last").reset_index(drop=True)


def _intervals(usable: dict[str, list[PerImageCounts]], rows: dict[str, dict], resamples: int, seed: int,
               best_name: str | None) -> None:
    rng = np.random.default_rng(seed)
    names = list(usable)
    runs = [run for v in names for run in usable[v]]
    images, classes = runs[0].intersection.shape
    stacked = np.empty((images, len(runs), 2, classes), np.float32)  # float32: exact enough, half the memory
    for i, run in enumerate(runs):
        stacked[:, i, 0], stacked[:, i, 1] = run.intersection, run.union
    weights = resample_weights(images, resamples, rng).astype(np.float32)
    sums = (weights @ stacked.reshape(images, -1)).reshape(resamples, len(runs), 2, classes)
    run_miou = mean_iou(sums[:, :, 0].astype(np.float64), sums[:, :, 1].astype(np.float64))
    first = np.cumsum([0] + [len(usable[v]) for v in names])
    variant_miou = np.empty((resamples, len(names)))
    for i, v in enumerate(names):
        drawn = rng.integers(0, len(usable[v]), size=(resamples, len(usable[v]))) + first[i]
        variant_miou[:, i] = np.take_along_axis(run_miou, drawn, axis=1).mean(axis=1)
    best = names.index(best_name) if best_name else max(range(len(names)), key=lambda i: rows[names[i]]["miou"])
    low, high = (1 - LEVEL) / 2 * 100, (1 + LEVEL) / 2 * 100
    for i, v in enumerate(names):
        difference = variant_miou[:, i] - variant_miou[:, best]
        d_low, d_high = np.percentile(difference, [low, high])
        m_low, m_high = np.percentile(variant_miou[:, i], [low, high])
        rows[v].update(miou_low=m_low, miou_high=m_high, diff_from_best=rows[v]["miou"] - rows[names[best]]["miou"],
                       diff_low=d_low, diff_high=d_high,
                       distinguishable_from_best=bool(i != best and (d_high < 0 or d_low > 0)))
