"""The report's paired bootstrap at the scale of a large comparison, against a per-resample loop.

    python benchmarks/bench_bootstrap.py [--variants 24] [--seeds 3] [--images 5000] [--classes 81]
                                         [--resamples 1000] [--loop-resamples 20]

Counts are fabricated like COCO's: each image labels a handful of its classes. The vectorised
bootstrap (`cocoseg.report.bootstrap.paired_bootstrap`) runs all `--resamples`; the baseline,
the plain loop (per resample, per run: index the drawn images, sum, score), runs
`--loop-resamples` and is scaled up to the same count. Prints a table with both times and their
ratio, and the peak memory of this process.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from cocoseg.evaluation.per_image import PerImageCounts
from cocoseg.report.bootstrap import paired_bootstrap
from cocoseg.shared.metrics import mean_iou


def fabricated_counts(images: int, classes: int, seed: int) -> PerImageCounts:
    rng = np.random.default_rng(seed)
    labelled = np.zeros((images, classes), np.int64)
    present = rng.integers(1, classes, size=(images, 4))  # four object classes per image, and background
    for column in range(present.shape[1]):
        np.add.at(labelled, (np.arange(images), present[:, column]), rng.integers(100, 20_000, images))
    labelled[:, 0] = rng.integers(50_000, 250_000, images)
    intersection = (labelled * rng.uniform(0.3, 0.95, size=labelled.shape)).astype(np.int64)
    predicted = intersection + rng.integers(0, 2_000, size=labelled.shape) * (labelled > 0)
    ids = np.arange(images)
    return PerImageCounts(ids, ids.astype(str), intersection, labelled, predicted)


def loop_bootstrap(runs: list[PerImageCounts], resamples: int, rng: np.random.Generator) -> np.ndarray:
    """The plain version: for each resample, each run's counts indexed by the drawn images."""
    images = runs[0].intersection.shape[0]
    out = np.empty((resamples, len(runs)))
    for b in range(resamples):
        drawn = rng.integers(0, images, images)
        for r, run in enumerate(runs):
            out[b, r] = mean_iou(run.intersection[drawn].sum(0).astype(float), run.union[drawn].sum(0))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=24)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--classes", type=int, default=81)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--loop-resamples", type=int, default=20)
    args = parser.parse_args()

    counts = {f"v{v:02d}": [fabricated_counts(args.images, args.classes, v * 100 + s) for s in range(args.seeds)]
              for v in range(args.variants)}
    start = time.perf_counter()
    table = paired_bootstrap("val", counts, args.resamples, seed=0)
    vectorised = time.perf_counter() - start
    runs = [run for runs in counts.values() for run in runs]
    start = time.perf_counter()
    loop_bootstrap(runs, args.loop_resamples, np.random.default_rng(0))
    loop = (time.perf_counter() - start) * args.resamples / args.loop_resamples
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert table["miou_low"].notna().all()

    print(f"{args.variants} variants x {args.seeds} seeds x {args.images} images x {args.classes} classes, "
          f"{args.resamples} resamples")
    print("| method | seconds | ratio to loop |")
    print("|---|---|---|")
    print(f"| loop (measured on {args.loop_resamples} resamples, scaled) | {loop:.1f} | 1.00 |")
    print(f"| vectorised (paired_bootstrap) | {vectorised:.3f} | {loop / vectorised:.1f}x faster |")
    print(f"peak memory of this process: {peak_mb:.0f} MiB")


if __name__ == "__main__":
    main()
