"""Tables, plots and REPORT.md from fixture results (no training)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cocoseg.files import write_csv, write_json
from cocoseg.report import PLOTS, build, pareto_front

from conftest import REPO

LABELS = [[0, "", "background"], [1, 3, "disc"], [2, 8, "square"]]
# variant -> (mIoU, images/s): "b" is slower and less accurate than "a", so off the front.
VARIANTS = {"v-a-64": (0.80, 40.0), "v-b-64": (0.70, 30.0), "v-c-96": (0.90, 20.0)}
SECTIONS = ["## Summary", "## Comparison", "## Design choices", "## Edge-case handling",
            "## Model architecture and improvements", "## Training resources and time",
            "## Per-class IoU", "## Sample predictions"]


def fixture_results(root: Path) -> Path:
    results = root / "results"
    for split, skipped in (("train", 0), ("val", 1)):
        d = results / "masks" / split
        rows = []
        for i in range(3):
            mask = np.zeros((4, 5), np.uint8)
            mask[0, : i + 1] = 1
            mask[3, :2] = 2
            mask[2, 4] = 255
            Image.fromarray(mask).save((d / "masks").mkdir(parents=True, exist_ok=True) or d / "masks" / f"{i}.png")
            rows.append([i, f"{i}.jpg", 5, 4, 2, "ok", "", f"{i}.png"])
        rows += [[9, "9.jpg", 5, 4, 1, "skipped", "image file missing", ""]] * skipped
        write_csv(d / "manifest.csv", ["image_id", "file_name", "width", "height", "annotations", "status",
                                       "reason", "mask"], rows)
        write_csv(d / "labels.csv", ["label", "category_id", "name"], LABELS)
        write_json(d / "summary.json", {"ok": 3, "skipped": skipped, "orphan_annotations": 0})
    for k, (name, (miou, speed)) in enumerate(VARIANTS.items()):
        history = [{"epoch": e, "train_loss": 1 / e, "val_miou": miou * e / 2, "seconds": 10.0} for e in (1, 2)]
        write_json(results / "models" / name / "summary.json", {
            "config": {"architecture": "DeepLabV3Plus", "encoder": name.split("-")[1], "image_size": [64, 64],
                       "batch_size": 4, "lr": 0.001, "weight_decay": 0.0001, "schedule": "poly",
                       "warmup_epochs": 1, "encoder_weights": None},
            "params": 1_000_000 * (k + 1), "epochs": 2, "train_seconds": 20.0 + k, "device": "cpu (test)",
            "precision": "32-true", "peak_memory_mb": 100.0 + k, "history": history})
        ev = results / "eval" / name / "val"
        write_json(ev / "metrics.json", {"miou": miou, "mdice": miou + 0.05, "pixel_accuracy": 0.95,
                                         "inference_images_per_s": speed, "inference_peak_memory_mb": 50.0})
        write_csv(ev / "per_class.csv", ["label", "category_id", "name", "iou", "dice", "label_pixels",
                                         "predicted_pixels"],
                  [[0, "", "background", 0.9, 0.95, 10, 10], [1, 3, "disc", miou, 0.8, 5, 5],
                   [2, 8, "square", "", "", 0, 0]])
        write_csv(ev / "confusion.csv", ["label", 0, 1, 2], [[0, 8, 2, 0], [1, 1, 4, 0], [2, 0, 0, 0]])
        (ev / "samples").mkdir(parents=True)
        Image.fromarray(np.full((8, 24, 3), 80 * k, np.uint8)).save(ev / "samples" / "0.png")
    return results


@pytest.fixture
def built(tmp_path):
    results = fixture_results(tmp_path)
    build(results, list(VARIANTS), ["val"], ["train", "val"], results / "report", tmp_path / "REPORT.md",
          REPO / "workflow" / "report" / "REPORT.md.jinja", "snakemake --cores all")
    return results / "report", (tmp_path / "REPORT.md").read_text()


def test_metrics_table_holds_the_fixture_numbers_and_the_pareto_front(built):
    report_dir, _ = built
    table = pd.read_csv(report_dir / "metrics.csv").set_index("variant")
    for name, (miou, speed) in VARIANTS.items():
        assert table.loc[name, "miou"] == pytest.approx(miou)
        assert table.loc[name, "inference_images_per_s"] == pytest.approx(speed)
    assert table["pareto"].to_dict() == {"v-a-64": True, "v-b-64": False, "v-c-96": True}
    assert table.loc["v-c-96", "params_m"] == pytest.approx(3.0)
    zoo = (report_dir / "metrics.md").read_text()
    assert zoo.startswith("| Method | Backbone | Crop size |") and "| 0.900 |" in zoo


def test_per_class_and_dataset_tables(built):
    report_dir, _ = built
    classes = pd.read_csv(report_dir / "per_class_iou.csv").set_index("class")
    assert classes.loc["disc", "v-b-64"] == pytest.approx(0.70)
    assert np.isnan(classes.loc["square", "v-a-64"])  # absent class stays empty, not 0
    stats = pd.read_csv(report_dir / "dataset_stats.csv").set_index("split")
    assert stats.loc["val", "skipped"] == 1 and stats.loc["val", "skip_reasons"] == "image file missing (1)"
    assert stats.loc["train", "instances"] == 6
    shares = pd.read_csv(report_dir / "class_pixel_share.csv").set_index("class")
    # train masks: disc 1+2+3 = 6 px, square 2 px each = 6 px, background 20*3 - 12 - 3 ignore = 45
    assert shares.loc["disc", "train"] == pytest.approx(6 / 57, rel=1e-5)


def test_every_plot_is_written(built):
    report_dir, _ = built
    for name in PLOTS:
        path = report_dir / "plots" / f"{name}.png"
        assert path.stat().st_size > 2000, name
        assert Image.open(path).size[0] > 100


def test_report_has_every_section_and_variant_with_numbers_from_results(built):
    _, text = built
    for section in SECTIONS:
        assert section in text
    for name in VARIANTS:
        assert text.count(name) >= 3
    assert "the best variant is **v-c-96**: mIoU 0.900" in text
    assert "Pareto front (no other variant both faster and more accurate): v-a-64, v-c-96." in text
    assert "(results/report/plots/samples.png)" in text
    assert "`snakemake --cores all`" in text


def test_pareto_front_on_ties_and_duplicates():
    speed = pd.Series([1.0, 1.0, 2.0, 0.5])
    accuracy = pd.Series([0.5, 0.6, 0.6, 0.9])
    assert pareto_front(speed, accuracy).tolist() == [False, False, True, True]
