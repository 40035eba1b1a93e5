"""The paired bootstrap over images and seeds, on counts whose answer is known."""

import numpy as np
import pytest

from cocoseg.evaluation.per_image import PerImageCounts, read_per_image, write_per_image
from cocoseg.report.bootstrap import paired_bootstrap, resample_weights
from cocoseg.shared.metrics import mean_iou

CLASSES = 4


def counts(accuracy: float, images: int, seed: int, ids=None) -> PerImageCounts:
    """Images of 100 labelled pixels spread over the classes; each class predicted right with
    a per-image rate drawn around `accuracy`, the misses going to class 0."""
    rng = np.random.default_rng(seed)
    labelled = rng.multinomial(100, [0.4, 0.3, 0.2, 0.1], size=images)
    rate = np.clip(rng.normal(accuracy, 0.15, size=(images, CLASSES)), 0, 1)
    intersection = np.floor(labelled * rate).astype(np.int64)
    predicted = intersection.copy()
    predicted[:, 0] += (labelled - intersection).sum(axis=1)
    ids = np.arange(images) if ids is None else np.asarray(ids)
    return PerImageCounts(ids, np.array([f"{i}.jpg" for i in ids]), intersection, labelled, predicted)


def by_variant(table):
    return table.set_index("variant")


def test_mean_iou_leaves_out_classes_nobody_labelled_or_predicted():
    assert mean_iou(np.array([3.0, 0.0, 1.0]), np.array([4.0, 0.0, 2.0])) == pytest.approx((0.75 + 0.5) / 2)


def test_resample_weights_draw_every_image_count_times_in_total():
    weights = resample_weights(50, 200, np.random.default_rng(0))
    assert weights.shape == (200, 50) and (weights.sum(axis=1) == 50).all()
    assert abs(weights.mean(axis=0) - 1).max() < 0.35  # each image drawn once per resample on average


def test_point_estimate_is_the_mean_over_seeds_of_each_runs_split_miou():
    runs = [counts(0.7, 40, seed) for seed in (1, 2)]
    expected = np.mean([mean_iou(r.intersection.sum(0).astype(float), r.union.sum(0).astype(float))
                        for r in runs])
    table = paired_bootstrap("val", {"a": runs}, resamples=100, seed=0)
    assert table.loc[0, "miou"] == pytest.approx(expected) and table.loc[0, "images"] == 40
    assert table.loc[0, "miou_low"] < expected < table.loc[0, "miou_high"]


def test_two_identical_variants_are_not_distinguishable():
    runs = [counts(0.7, 60, seed) for seed in (1, 2, 3)]
    table = by_variant(paired_bootstrap("val", {"a": runs, "b": list(runs)}, resamples=500, seed=0))
    assert table.loc["b", "diff_from_best"] == 0
    assert table.loc["b", "diff_low"] <= 0 <= table.loc["b", "diff_high"]
    assert not table["distinguishable_from_best"].any()


def test_a_model_far_ahead_is_beyond_noise():
    good = [counts(0.8, 60, seed) for seed in (1, 2, 3)]
    constant = [counts(0.2, 60, seed) for seed in (1, 2, 3)]
    table = by_variant(paired_bootstrap("val", {"constant": constant, "good": good}, resamples=500, seed=0))
    assert table.index[0] == "good" and table.loc["constant", "distinguishable_from_best"]
    assert table.loc["constant", "diff_high"] < 0


def test_the_interval_shrinks_as_images_are_added():
    width = {}
    for images in (20, 500):
        table = by_variant(paired_bootstrap("val", {"a": [counts(0.7, images, s) for s in (1, 2)],
                                                    "b": [counts(0.65, images, s + 10) for s in (1, 2)]},
                                            resamples=400, seed=0))
        width[images] = table.loc["a", "miou_high"] - table.loc["a", "miou_low"]
    assert width[500] < width[20] / 2


def test_a_fixed_seed_gives_the_same_intervals_and_another_seed_others():
    variants = {"a": [counts(0.7, 50, s) for s in (1, 2)], "b": [counts(0.6, 50, s) for s in (3, 4)]}
    first, again = (paired_bootstrap("val", variants, 300, seed=7) for _ in range(2))
    assert first.equals(again)
    assert not first.equals(paired_bootstrap("val", variants, 300, seed=8))


def test_images_in_another_order_are_paired_by_id():
    runs = [counts(0.7, 30, 1)]
    shuffled = np.random.default_rng(0).permutation(30)
    reordered = [PerImageCounts(r.image_ids[shuffled], r.file_names[shuffled], r.intersection[shuffled],
                                r.labelled[shuffled], r.predicted[shuffled]) for r in runs]
    table = by_variant(paired_bootstrap("val", {"a": runs, "b": reordered}, resamples=200, seed=0))
    assert table.loc["b", "diff_low"] == pytest.approx(0) and table.loc["b", "diff_high"] == pytest.approx(0)


def test_missing_counts_one_seed_or_other_images_say_why_and_never_crash():
    table = by_variant(paired_bootstrap("val", {
        "full": [counts(0.7, 30, 1), counts(0.7, 30, 2)], "one_seed": [counts(0.6, 30, 3)],
        "old": None, "elsewhere": [counts(0.6, 30, 4, ids=range(100, 130))]}, resamples=100, seed=0))
    assert "one seed" in table.loc["one_seed", "note"] and table.loc["one_seed", "miou_low"] > 0
    assert "no per-image counts" in table.loc["old", "note"] and np.isnan(table.loc["old", "miou_low"])
    assert "other images" in table.loc["elsewhere", "note"] and np.isnan(table.loc["elsewhere", "diff_low"])
    assert table.loc["full", "note"] == ""


def test_the_per_image_file_round_trips(tmp_path):
    run = counts(0.7, 12, 1)
    write_per_image(tmp_path / "per_image.npz", run.image_ids.tolist(), run.file_names.tolist(),
                    list(zip(run.intersection, run.labelled, run.predicted)))
    back = read_per_image(tmp_path / "per_image.npz")
    for name in ("image_ids", "file_names", "intersection", "labelled", "predicted"):
        assert (getattr(back, name) == getattr(run, name)).all()
