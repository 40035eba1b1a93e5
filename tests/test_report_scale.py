"""The report at scale: 24 variants (3 architectures x 2 encoders x 2 sizes x 2 losses), 3 seeds,
80 classes, fabricated so every effect is known, and every plot checked as a reader sees it; and
COCO-Stuff's 171 classes without a background class."""

import itertools
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from conftest import REPO
from matplotlib.text import Text
from PIL import Image

from cocoseg.masks.split_folder import manifest_row, write_labels, write_manifest
from cocoseg.report import plots
from cocoseg.report.document import build
from cocoseg.report.plot_names import PLOTS
from cocoseg.shared.files import write_csv, write_json

ARCHITECTURES = {"UnetPlusPlus": 0.00, "FPN": 0.04, "DeepLabV3Plus": 0.10}  # the largest effect
ENCODERS = {"efficientnet-b3": 0.03, "resnet50": 0.0}
SIZES = {512: 0.0, 768: 0.02}
LOSSES = {"ce": 0.0, "focal": 0.005}  # smaller than the seed noise below
SEED_NOISE = [-0.01, 0.0, 0.01]
CLASSES = [f"category number {i}" for i in range(1, 81)]
STUFF_CLASSES = [f"stuff or thing {i}" for i in range(171)]


def grid() -> dict[str, dict]:
    """name -> config and per-seed mIoU, from the effects above."""
    variants = {}
    for (arch, a), (encoder, e), (size, s), (loss, lo) in itertools.product(
            ARCHITECTURES.items(), ENCODERS.items(), SIZES.items(), LOSSES.items()):
        name = f"{arch.lower()}-{encoder}-{size}" + ("-focal" if loss == "focal" else "")
        config = {"architecture": arch, "encoder": encoder, "image_size": [size, size], "loss": loss,
                  "schedule": "poly", "lr": 0.001, "batch_size": 16, "weight_decay": 0.0001, "warmup_epochs": 1,
                  "encoder_weights": "imagenet", "name": name}
        variants[name] = {"config": config, "mious": [0.5 + a + e + s + lo + n for n in SEED_NOISE],
                          "cost": 0.1 * (1 + a * 10) * (1 + s * 50), "speed": 100 / (1 + a * 10 + s * 50)}
    return variants


def write_results(root: Path, variants: dict[str, dict], classes: list[str] = CLASSES, background: bool = True
                  ) -> Path:
    results = root / "results"
    first = int(background)
    labels = [[i, 1000 + i, name] for i, name in enumerate(classes, start=first)]
    pixels = {**({"background": 5000} if background else {}), **{name: 10 * (i + 1) for i, name in enumerate(classes)}}
    for split in ("train", "val"):
        d = results / "masks" / split
        write_manifest(d / "manifest.csv", [manifest_row(i, f"{i}.jpg", 5, 4, 2, "ok", "", f"{i}.png", "c")
                                            for i in range(3)])
        write_labels(d / "labels.csv", labels, background)
        write_json(d / "summary.json", {"ok": 3, "skipped": 0, "orphan_annotations": 0, "class_pixels": pixels})
    rows = [[0, "", "background"]] * background + labels
    for name, variant in variants.items():
        for seed, miou in enumerate(variant["mious"]):
            history = [{"epoch": e, "train_loss": 1 / e, "val_miou": miou * e / 3, "seconds": 10.0} for e in (1, 2, 3)]
            write_json(results / "models" / name / f"seed-{seed}" / "summary.json", {
                "config": {**variant["config"], "seed": seed}, "params": 25_000_000, "epochs": 3,
                "train_seconds": 3600 * variant["cost"], "device_hours": variant["cost"],
                "device_hours_unit": "GPU-hours", "device": "gpu (test)", "precision": "16-mixed",
                "selection": {"split": "train", "subset": "holdout", "images": 100}, "peak_memory_mb": 4000.0,
                "best_val_miou": miou,
                "history": history})
            ev = results / "eval" / name / f"seed-{seed}" / "val"
            write_json(ev / "metrics.json", {"miou": miou, "mdice": miou + 0.05, "pixel_accuracy": 0.9, "epoch": 3,
                                             "last_epoch_miou": miou, "inference_images_per_s": variant["speed"],
                                             "inference_peak_memory_mb": 900.0})
            write_csv(ev / "per_class.csv", ["label", "category_id", "name", "iou", "dice", "label_pixels",
                                             "predicted_pixels"],
                      [[*row, miou, miou, 10, 10] for row in rows])
            confusion = np.eye(len(rows), dtype=int) * 9 + 1
            write_csv(ev / "confusion.csv", ["label", *range(len(rows))],
                      [[i, *row] for i, row in enumerate(confusion.tolist())])
            (ev / "samples").mkdir(parents=True)
            Image.fromarray(np.full((8, 24, 3), 90, np.uint8)).save(ev / "samples" / "0.png")
    return results


def hidden_tick_labels(fig: plt.Figure) -> set[int]:
    """Tick labels outside their axis's view: matplotlib keeps them but does not draw them."""
    hidden = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not low - 1e-9 <= tick.get_loc() <= high + 1e-9:
                    hidden.update({id(tick.label1), id(tick.label2)})
    return hidden


def overlapping_texts(fig: plt.Figure) -> list[tuple[str, str]]:
    """Pairs of drawn, non-empty texts of a figure whose boxes overlap."""
    renderer = fig.canvas.get_renderer()
    hidden = hidden_tick_labels(fig)
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and id(t) not in hidden]
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    return [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2)
            if box_a.overlaps(box_b) and box_a.width * box_a.height > 0 and box_b.width * box_b.height > 0]


def build_and_inspect(root: Path, variants: dict[str, dict], monkeypatch: pytest.MonkeyPatch, **classes):
    """The report of fabricated results, and what each plot draws (its texts and their overlaps)."""
    results = write_results(root, variants, **classes)
    drawn = {}
    save = plots._save

    def inspect_then_save(fig, path):
        fig.canvas.draw()
        drawn[Path(path).stem] = {"overlaps": overlapping_texts(fig),
                                  "texts": [t.get_text() for t in fig.findobj(Text) if t.get_visible()]}
        save(fig, path)

    monkeypatch.setattr(plots, "_save", inspect_then_save)
    build(results, list(variants), ["0", "1", "2"], ["val"], ["train", "val"], results / "report",
          root / "REPORT.md", REPO / "workflow" / "report" / "REPORT.md.jinja", ["config/config.yaml"])
    return variants, results / "report", (root / "REPORT.md").read_text(), drawn


@pytest.fixture(scope="module")
def large(module_tmp, monkeypatch_module):
    return build_and_inspect(module_tmp("large"), grid(), monkeypatch_module)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.mark.slow
def test_every_plot_keeps_its_texts_apart(large):
    _, _, _, drawn = large
    assert set(drawn) == set(PLOTS)
    for name, figure in drawn.items():
        assert figure["overlaps"] == [], name


def test_plots_name_every_variant_in_full_where_they_list_variants(large):
    variants, _, _, drawn = large
    for name in ("metrics_bars", "speed_accuracy", "cost_accuracy", "per_class_iou"):
        texts = " | ".join(drawn[name]["texts"])
        assert all(variant in texts for variant in variants), name
    # the busiest plots show the best 8 and say so
    best_eight = sorted(variants, key=lambda v: -np.mean(variants[v]["mious"]))[:8]
    for name in ("training_curves", "samples"):
        texts = drawn[name]["texts"]
        assert "the 8 best of 24 variants" in " ".join(texts) and all(v in " ".join(texts) for v in best_eight), name


@pytest.mark.slow
def test_figures_grow_with_the_number_of_variants(large, tmp_path):
    _, report_dir, _, _ = large
    small = write_results(tmp_path, dict(list(grid().items())[:2]))
    build(small, list(grid())[:2], ["0", "1", "2"], ["val"], ["train", "val"], small / "report",
          tmp_path / "REPORT.md", REPO / "workflow" / "report" / "REPORT.md.jinja", ["config/config.yaml"])
    for name in ("metrics_bars", "per_class_iou"):
        large_size = Image.open(report_dir / "plots" / f"{name}.png").size
        small_size = Image.open(small / "report" / "plots" / f"{name}.png").size
        assert large_size[0] * large_size[1] > 2 * small_size[0] * small_size[1], name


def test_the_mean_iou_is_said_to_count_background_where_it_is_a_label(large):
    _, _, text, _ = large
    assert "of the 81 labels (background among them)" in " ".join(text.split())


def test_tables_follow_the_ranking(large):
    variants, report_dir, text, _ = large
    expected = sorted(variants, key=lambda v: -np.mean(variants[v]["mious"]))
    main = (report_dir / "metrics.md").read_text().split("\n\n")[0].splitlines()[2:]
    ranked = [line.split(" | ")[0].removeprefix("| ") for line in main]
    means = [np.mean(variants[v]["mious"]) for v in ranked]
    assert sorted(ranked) == sorted(variants) and means == sorted(means, reverse=True)
    assert ranked[0] == expected[0] == "deeplabv3plus-efficientnet-b3-768-focal"


def test_main_effects_and_interactions_equal_means_computed_from_the_grid(large):
    variants, report_dir, _, _ = large
    frame = pd.DataFrame([{**v["config"], "image_size": "{0}x{1}".format(*v["config"]["image_size"]),
                           "miou": np.mean(v["mious"])} for v in variants.values()])
    effects = pd.read_csv(report_dir / "main_effects.csv")
    assert list(dict.fromkeys(effects["setting"])) == ["architecture", "encoder", "image_size", "loss"]
    for row in effects.itertuples():
        chosen = frame[row.setting].astype(str) == str(row.value)
        assert row.miou_mean == pytest.approx(frame.loc[chosen, "miou"].mean())
    pairs = pd.read_csv(report_dir / "interactions.csv")
    assert len(pairs.groupby(["setting_a", "setting_b"])) == 6  # every pair of the 4 settings: a complete grid
    for row in pairs.itertuples():
        chosen = (frame[row.setting_a].astype(str) == str(row.value_a)) & (
            frame[row.setting_b].astype(str) == str(row.value_b))
        assert row.miou_mean == pytest.approx(frame.loc[chosen, "miou"].mean()) and row.variants == chosen.sum()


def test_the_summary_answers_in_words(large):
    _, _, text, _ = large
    summary = text[text.index("## Summary"):text.index("## Comparison")]
    assert summary.index("the best variant is **deeplabv3plus-efficientnet-b3-768-focal**") < summary.index(
        "What moves mIoU most")
    moves = summary[summary.index("What moves mIoU most"):]
    # architecture moves mIoU by 0.10, encoder by 0.03, size by 0.02, loss by 0.005: in that order
    assert (moves.index("**architecture** (DeepLabV3Plus") < moves.index("**encoder** (efficientnet-b3")
            < moves.index("**image_size**") < moves.index("**loss** (focal"))
    assert "0.100 apart" in moves
    # the seeds' std is 0.01: the loss's 0.005 is not told apart, the size's 0.02 is
    assert "by this run: loss." in " ".join(moves.split())
    assert "Each step up in training cost on val" in summary


@pytest.mark.slow
def test_coco_stuff_scale_without_background_stays_readable(module_tmp, monkeypatch_module):
    """171 classes and no background row (`masks.unlabeled: ignore`): every plot keeps its texts
    apart, and the per-class plot, table and sample legend show the 15 most and 15 least
    frequent classes, never a background class."""
    variants = dict(list(grid().items())[:3])
    _, report_dir, text, drawn = build_and_inspect(module_tmp("stuff"), variants, monkeypatch_module,
                                                   classes=STUFF_CLASSES, background=False)
    for name, figure in drawn.items():
        assert figure["overlaps"] == [], name
    assert "| background" not in text and "(15 most and 15 least frequent of 171 classes)" in text
    assert "of the 171 labels (no background class" in " ".join(text.split())
    background = pd.read_csv(report_dir / "per_class_iou.csv")
    assert len(background) == 171 and "background" not in set(background.iloc[:, 0])
    by_frequency = STUFF_CLASSES[::-1]  # the fabricated pixel counts grow with the label
    shown = by_frequency[:15] + by_frequency[-15:]
    for name in ("per_class_iou", "samples"):
        texts = drawn[name]["texts"]
        assert sorted(t for t in texts if t.startswith("stuff or thing")) == sorted(shown), name
