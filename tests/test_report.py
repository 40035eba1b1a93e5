"""Tables, plots and REPORT.md from fixture results (no training)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO
from PIL import Image

from cocoseg.masks.split_folder import manifest_row, write_labels, write_manifest
from cocoseg.report.document import build
from cocoseg.report.plot_names import PLOTS
from cocoseg.report.statistics import pareto_front
from cocoseg.report.tables import shown_classes, top_confusions
from cocoseg.shared.files import write_csv, write_json

LABELS = [[1, 3, "disc"], [2, 8, "square"]]
# variant -> (mIoU per seed, images/s): "b" is slower and less accurate than "a", so off the front;
# "c" leads "a" by 0.10 with a spread of 0.02 per seed: beyond noise.
VARIANTS = {"v-a-64": ((0.79, 0.81), 40.0), "v-b-64": ((0.69, 0.71), 30.0), "v-c-96": ((0.89, 0.91), 20.0)}
SEEDS = ["0", "1"]
SECTIONS = ["## Summary", "## Comparison", "## Design choices", "## Edge-case handling",
            "## Model architecture and improvements", "## Training resources and time",
            "## Per-class IoU", "## Sample predictions"]


def fixture_results(root: Path, variants=VARIANTS, seeds=SEEDS, selection=("train", "holdout")) -> Path:
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
            rows.append(manifest_row(i, f"{i}.jpg", 5, 4, 2, "ok", "", f"{i}.png", "c", holdout=split == "train" and i == 0))
        rows += [manifest_row(9, "9.jpg", 5, 4, 1, "skipped", "image file missing")] * skipped
        write_manifest(d / "manifest.csv", rows)
        write_labels(d / "labels.csv", LABELS)
        # what the mask stage counts in these masks: disc 1+2+3, square 2 x 3, background 60 - 12 - 3 ignored
        write_json(d / "summary.json", {"ok": 3, "skipped": skipped, "orphan_annotations": 0,
                                        "class_pixels": {"background": 45, "disc": 6, "square": 6}})
    for k, (name, (mious, speed)) in enumerate(variants.items()):
        for seed, miou in zip(seeds, mious):
            history = [{"epoch": e, "train_loss": 1 / e, "val_miou": miou * e / 2, "seconds": 10.0} for e in (1, 2)]
            write_json(results / "models" / name / f"seed-{seed}" / "summary.json", {
                "config": {"architecture": "DeepLabV3Plus", "encoder": name.split("-")[1], "image_size": [64, 64],
                           "batch_size": 4, "lr": 0.001, "weight_decay": 0.0001, "schedule": "poly",
                           "warmup_epochs": 1, "encoder_weights": None},
                "params": 1_000_000 * (k + 1), "epochs": 2, "train_seconds": 360.0 * (k + 1),
                "device_hours": 0.2 * (k + 1), "device_hours_unit": "CPU core-hours", "device": "cpu (test)",
                "selection": {"split": selection[0], "subset": selection[1], "images": 1},
                "precision": "32-true", "peak_memory_mb": 100.0 + k, "history": history, "best_val_miou": miou})
            ev = results / "eval" / name / f"seed-{seed}" / "val"
            write_json(ev / "metrics.json", {"miou": miou, "mdice": miou + 0.05, "pixel_accuracy": 0.95,
                                             "epoch": 2, "last_epoch_miou": miou - 0.01,
                                             "inference_images_per_s": speed, "inference_peak_memory_mb": 50.0})
            write_csv(ev / "per_class.csv", ["label", "category_id", "name", "iou", "dice", "label_pixels",
                                             "predicted_pixels"],
                      [[0, "", "background", 0.9, 0.95, 10, 10], [1, 3, "disc", miou, 0.8, 5, 5],
                       [2, 8, "square", "", "", 0, 0]])
            write_csv(ev / "confusion.csv", ["label", 0, 1, 2], [[0, 8, 2, 0], [1, 1, 4, 0], [2, 0, 0, 0]])
            (ev / "samples").mkdir(parents=True)
            Image.fromarray(np.full((8, 24, 3), 80 * k, np.uint8)).save(ev / "samples" / "0.png")
    return results


def build_report(tmp_path, **fixture):
    results = fixture_results(tmp_path, **fixture)
    seeds = fixture.get("seeds", SEEDS)
    build(results, list(fixture.get("variants", VARIANTS)), seeds, ["val"], ["train", "val"], results / "report",
          tmp_path / "REPORT.md", REPO / "workflow" / "report" / "REPORT.md.jinja", ["config/config.yaml"])
    return results / "report", (tmp_path / "REPORT.md").read_text()


@pytest.fixture
def built(tmp_path):
    return build_report(tmp_path)


def test_metrics_table_holds_mean_and_std_over_seeds_and_the_pareto_front(built):
    report_dir, _ = built
    table = pd.read_csv(report_dir / "metrics.csv").set_index("variant")
    for name, (mious, speed) in VARIANTS.items():
        assert table.loc[name, "miou_mean"] == pytest.approx(np.mean(mious))
        assert table.loc[name, "miou_std"] == pytest.approx(np.std(mious, ddof=1), rel=1e-5)
        assert table.loc[name, "last_epoch_miou_mean"] == pytest.approx(np.mean(mious) - 0.01)
        assert table.loc[name, "inference_images_per_s_mean"] == pytest.approx(speed)
        assert table.loc[name, "seeds"] == 2 and table.loc[name, "selected_on"] == "train (holdout)"
    assert table["pareto"].to_dict() == {"v-a-64": True, "v-b-64": False, "v-c-96": True}
    assert table.loc["v-c-96", "params_m"] == pytest.approx(3.0)
    # cost: 0.6 core-hours for c; 0.9 mIoU / 0.6 h
    assert table.loc["v-c-96", "device_hours_mean"] == pytest.approx(0.6)
    assert table.loc["v-c-96", "miou_per_device_hour"] == pytest.approx(0.9 / 0.6)
    per_seed = pd.read_csv(report_dir / "metrics_per_seed.csv")
    assert len(per_seed) == 6 and sorted(per_seed["seed"].unique()) == [0, 1]
    main, details = (report_dir / "metrics.md").read_text().split("\n\n")
    assert main.startswith("| Variant | Params (M) | Cost | Images/s | mIoU | 95% interval | vs best (95% interval) |"
                           " mDice | Pixel accuracy |\n")
    row_c = next(line for line in main.splitlines() if line.startswith("| v-c-96 |"))
    assert row_c == ("| v-c-96 | 3.0 | 0.600 CPU core-hours | 20.0 ± 0.0 | 0.900 ± 0.014 | n/a | best | 0.950 ± 0.014 |"
                     " 0.950 ± 0.000 |")  # the fixture has no per-image counts: no intervals
    assert details.startswith("| Variant | Split | Method | Backbone | Crop size | Schedule | Loss |")
    assert "| poly, 2 epochs | ce |" in details and "| train (holdout) |" in details and "aAcc" not in main + details


def test_every_abbreviation_of_the_comparison_is_defined(built):
    _, text = built
    comparison = text[text.index("## Comparison"):text.index("## Design choices")]
    for term in ("**mIoU**", "**mDice**", "**pixel accuracy**", "**Images/s**", "**Cost**"):
        assert term in comparison
    assert "Timings are unsteady" not in text  # every fixture timing is the same for both seeds


def test_timings_that_swing_between_seeds_are_flagged(tmp_path):
    results = fixture_results(tmp_path)
    for seed, speed in (("0", 5.0), ("1", 35.0)):  # mean 20, std 21: far above a quarter of the mean
        path = results / "eval" / "v-a-64" / f"seed-{seed}" / "val" / "metrics.json"
        write_json(path, {**json.loads(path.read_text()), "inference_images_per_s": speed})
    build(results, list(VARIANTS), SEEDS, ["val"], ["train", "val"], results / "report", tmp_path / "REPORT.md",
          REPO / "workflow" / "report" / "REPORT.md.jinja", ["config/config.yaml"])
    text = (tmp_path / "REPORT.md").read_text()
    assert "**Timings are unsteady in this run**: inference images/s of v-a-64 (val) varied by 106% of its mean" \
        in text
    assert "v-b-64 (val) varied" not in text


def test_error_bars_never_reach_below_zero():
    from cocoseg.report.plots import error_bar
    assert error_bar(20.0, 21.2) == [[20.0], [21.2]]
    assert error_bar(20.0, 3.0) == [[3.0], [3.0]]
    assert error_bar(0.5, float("nan")) == [[0.0], [0.0]]


def test_per_class_and_dataset_tables(built):
    report_dir, _ = built
    classes = pd.read_csv(report_dir / "per_class_iou.csv").set_index("class")
    assert classes.loc["disc", "v-b-64"] == pytest.approx(0.70)
    assert classes.loc["disc", "v-b-64 std"] == pytest.approx(np.std([0.69, 0.71], ddof=1), rel=1e-5)
    assert np.isnan(classes.loc["square", "v-a-64"])  # absent class stays empty, not 0
    assert len(pd.read_csv(report_dir / "per_class_iou_per_seed.csv")) == 3 * 2 * 3
    stats = pd.read_csv(report_dir / "dataset_stats.csv").set_index("split")
    assert stats.loc["val", "skipped"] == 1 and stats.loc["val", "skip_reasons"] == "image file missing (1)"
    assert stats.loc["train", "instances"] == 6 and stats.loc["train", "held_out"] == 1
    shares = pd.read_csv(report_dir / "class_pixel_share.csv").set_index("class")
    # train masks: disc 1+2+3 = 6 px, square 2 px each = 6 px, background 20*3 - 12 - 3 ignore = 45
    assert shares.loc["disc", "train"] == pytest.approx(6 / 57, rel=1e-5)


def test_top_confused_pairs(built):
    report_dir, text = built
    pairs = pd.read_csv(report_dir / "top_confusions.csv")
    first = pairs[pairs["variant"] == "v-a-64"].iloc[0]
    # background: 8 right, 2 as disc -> 20% of its pixels, 2 px per seed x 2 seeds
    assert (first["label"], first["predicted"], first["pixels"]) == ("background", "disc", 4)
    assert first["share"] == pytest.approx(0.2)
    assert "| v-a-64 | val | background | disc | 0.200 | 4 |" in text


def test_top_confusions_rank_shares_and_skip_the_diagonal():
    confusion = np.array([[90, 10, 0], [30, 60, 10], [0, 0, 5]])
    pairs = top_confusions(confusion, ["a", "b", "c"], k=5)
    assert pairs[["label", "predicted"]].values.tolist() == [["b", "a"], ["a", "b"], ["b", "c"]]
    assert pairs["share"].tolist() == pytest.approx([0.3, 0.1, 0.1])


def test_every_plot_is_written_and_shown_in_the_report(built):
    report_dir, text = built
    for name in PLOTS:
        path = report_dir / "plots" / f"{name}.png"
        assert path.stat().st_size > 2000, name
        assert Image.open(path).size[0] > 100
        assert f"](results/report/plots/{name}.png)" in text, name


def test_report_has_every_section_and_variant_with_numbers_from_results(built):
    _, text = built
    for section in SECTIONS:
        assert section in text
    for name in VARIANTS:
        assert text.count(name) >= 3
    assert "the best variant is **v-c-96**: mIoU 0.900 ± 0.014" in text
    assert "Its lead over v-a-64 (0.100 mIoU) is **beyond seed noise**" in text
    assert "Pareto front (no other variant both faster and more accurate, on means): v-c-96, v-a-64." in text
    assert "chosen on images the scores do not come from" in text
    assert "held out of training (and never\nscored)" in text and "trained once per seed (here\n  2)" in text
    assert "Selection and scoring used the same images" not in text
    assert "(results/report/plots/samples.png)" in text and "(results/report/plots/cost_accuracy.png)" in text
    assert "This version: `snakemake` with `config/config.yaml` on" in text


def test_a_lead_within_seed_noise_is_called_so(tmp_path):
    close = {"v-a-64": ((0.70, 0.90), 40.0), "v-b-64": ((0.78, 0.80), 30.0)}
    _, text = build_report(tmp_path, variants=close)
    assert "Its lead over v-b-64 (0.010 mIoU) is **within seed noise**" in text


def test_one_seed_says_no_spread_is_available(tmp_path):
    one = {name: (mious[:1], speed) for name, (mious, speed) in VARIANTS.items()}
    report_dir, text = build_report(tmp_path, variants=one, seeds=["0"])
    assert "with one seed per\n  variant no spread is available" in text
    assert "| 0.890 |" in (report_dir / "metrics.md").read_text()  # no "± nan"


def test_selection_on_the_scored_split_is_flagged(tmp_path):
    _, text = build_report(tmp_path, selection=("val", "all"))
    assert "**Selection and scoring used the same images**" in text
    assert "held out of training (and never" not in text  # the design notes say what this run did
    assert "this run chose the best epoch on the\n  scored split itself" in text


def test_many_classes_plot_the_most_and_least_frequent(tmp_path):
    frequency = pd.Series({f"c{i}": float(i) for i in range(80)})
    shown, note = shown_classes(frequency)
    assert len(shown) == 30 and shown[0] == "c79" and shown[-1] == "c0" and "of 80 classes" in note
    assert shown_classes(frequency.iloc[:10])[0] == [f"c{i}" for i in range(9, -1, -1)]


def test_pareto_front_on_ties_and_duplicates():
    speed = pd.Series([1.0, 1.0, 2.0, 0.5])
    accuracy = pd.Series([0.5, 0.6, 0.6, 0.9])
    assert pareto_front(speed, accuracy).tolist() == [False, False, True, True]


def test_a_gpu_job_that_ran_on_the_cpu_says_so_in_the_report(tmp_path):
    results = fixture_results(tmp_path)
    for summary in (results / "models" / "v-a-64").rglob("summary.json"):
        saved = json.loads(summary.read_text())
        write_json(summary, {**saved, "accelerator": "cpu", "gpu_requested": True})
    build(results, list(VARIANTS), SEEDS, ["val"], ["train", "val"], results / "report", tmp_path / "REPORT.md",
          REPO / "workflow" / "report" / "REPORT.md.jinja", ["config/config.yaml"])
    rows = [line for line in (tmp_path / "REPORT.md").read_text().splitlines() if "cpu (test)" in line]
    marked = [line for line in rows if "(GPU asked for, none usable)" in line]
    assert marked and all(line.startswith("| v-a-64 ") for line in marked)


def test_main_effects_average_the_variants_that_share_a_value():
    from cocoseg.report.statistics import main_effects
    table = pd.DataFrame({"variant": ["u-64", "u-96", "f-64", "f-96"], "split": "val",
                          "miou_mean": [0.60, 0.70, 0.50, 0.80]})
    configs = {"u-64": {"architecture": "Unet", "image_size": [64, 64], "lr": 0.001, "name": "u-64", "seed": 0},
               "u-96": {"architecture": "Unet", "image_size": [96, 96], "lr": 0.001, "name": "u-96", "seed": 0},
               "f-64": {"architecture": "FPN", "image_size": [64, 64], "lr": 0.001, "name": "f-64", "seed": 0},
               "f-96": {"architecture": "FPN", "image_size": [96, 96], "lr": 0.001, "name": "f-96", "seed": 0}}
    effects = main_effects(table, configs)
    rows = {(r.setting, r.value): r for r in effects.itertuples()}
    assert set(effects["setting"]) == {"architecture", "image_size"}  # lr, name and seed do not rank
    assert rows["image_size", "96x96"].miou_mean == pytest.approx(0.75)
    assert rows["image_size", "64x64"].miou_mean == pytest.approx(0.55)
    assert rows["architecture", "Unet"].miou_mean == pytest.approx(0.65)
    assert rows["architecture", "FPN"].miou_std == pytest.approx(np.std([0.5, 0.8], ddof=1))
    assert list(effects["setting"])[:2] == ["image_size", "image_size"]  # range 0.20 before 0.00


def test_the_report_says_what_each_setting_contributes(built):
    report_dir, text = built
    effects = pd.read_csv(report_dir / "main_effects.csv")
    assert set(effects["setting"]) == {"encoder"} and len(effects) == 3
    assert "What each setting contributes" in text and "| val | encoder | c | 1 | 0.900 ± 0.014 |" not in text
    assert "| val | encoder | c | 1 | 0.900 | 0.200 |" in text


def test_each_step_up_in_cost_goes_through_the_variants_no_other_beats_on_cost_and_miou():
    from cocoseg.report.statistics import cost_steps
    part = pd.DataFrame({"variant": ["top", "dear-but-worse", "cheap", "mid"],
                         "device_hours_mean": [4.0, 3.0, 1.0, 2.0], "miou_mean": [0.80, 0.60, 0.50, 0.70],
                         "inference_images_per_s_mean": [10.0, 20.0, 40.0, 20.0]})
    steps = cost_steps(part)
    assert list(zip(steps["from_variant"], steps["variant"])) == [("cheap", "mid"), ("mid", "top")]
    assert steps["miou_gain"].tolist() == pytest.approx([0.20, 0.10])
    assert steps["cost_ratio"].tolist() == pytest.approx([2.0, 2.0])
    assert steps["speed_ratio"].tolist() == pytest.approx([0.5, 0.5])


def with_per_image_counts(results: Path, accuracy: dict[str, float]) -> None:
    """Per-image counts for every run (30 images), and metrics.json's mIoU recomputed from them."""
    from test_bootstrap import counts

    from cocoseg.evaluation.per_image import write_per_image
    from cocoseg.shared.metrics import mean_iou
    for k, (variant, rate) in enumerate(accuracy.items()):
        for seed in SEEDS:
            run = counts(rate, 30, int(seed) + 10 * k if rate not in list(accuracy.values())[:k] else int(seed))
            ev = results / "eval" / variant / f"seed-{seed}" / "val"
            write_per_image(ev / "per_image.npz", run.image_ids.tolist(), run.file_names.tolist(),
                            list(zip(run.intersection, run.labelled, run.predicted)))
            metrics = json.loads((ev / "metrics.json").read_text())
            metrics["miou"] = float(mean_iou(run.intersection.sum(0).astype(float),
                                                   run.union.sum(0).astype(float)))
            write_json(ev / "metrics.json", metrics)


def test_the_verdict_gives_the_leads_interval_over_images_and_seeds(tmp_path):
    results = fixture_results(tmp_path)
    with_per_image_counts(results, {"v-a-64": 0.5, "v-b-64": 0.5, "v-c-96": 0.85})  # a and b: the same counts
    build(results, list(VARIANTS), SEEDS, ["val"], ["train", "val"], results / "report", tmp_path / "REPORT.md",
          REPO / "workflow" / "report" / "REPORT.md.jinja", ["config/config.yaml"])
    text = " ".join((tmp_path / "REPORT.md").read_text().split())
    table = pd.read_csv(results / "report" / "metrics.csv").set_index("variant")
    assert "the best variant is **v-c-96**" in text
    low, high = -table.loc["v-a-64", "diff_high"], -table.loc["v-a-64", "diff_low"]
    lead = table.loc["v-c-96", "miou_mean"] - table.loc["v-a-64", "miou_mean"]
    assert 0 < low < lead < high
    assert (f"It leads v-a-64 by {lead:.3f} mIoU (95% interval [{low:.3f}, {high:.3f}]) over 30 images and 2 seed(s):"
            " **beyond noise**") in text
    assert table.loc["v-b-64", "diff_low"] < table.loc["v-b-64", "diff_high"] < 0  # behind the best too
    main = (results / "report" / "metrics.md").read_text().split("\n\n")[0]
    assert "| best |" in main and main.count(", tied |") == 0
    hardest = pd.read_csv(results / "report" / "hardest_images.csv")
    assert set(hardest["variant"]) == set(VARIANTS) and (hardest.groupby("variant").size() == 5).all()
    differing = pd.read_csv(results / "report" / "top_two_disagreements.csv")
    assert len(differing) == 5 and differing["difference"].abs().is_monotonic_decreasing


def test_a_lead_the_bootstrap_cannot_tell_apart_is_called_so(tmp_path):
    results = fixture_results(tmp_path)
    with_per_image_counts(results, {"v-a-64": 0.6, "v-b-64": 0.4, "v-c-96": 0.6})  # a and c: the same counts
    for seed in SEEDS:  # c ahead by a hair on metrics.json, as seeds can leave it
        path = results / "eval" / "v-c-96" / f"seed-{seed}" / "val" / "metrics.json"
        write_json(path, {**json.loads(path.read_text()), "miou": json.loads(path.read_text())["miou"] + 1e-4})
    build(results, list(VARIANTS), SEEDS, ["val"], ["train", "val"], results / "report", tmp_path / "REPORT.md",
          REPO / "workflow" / "report" / "REPORT.md.jinja", ["config/config.yaml"])
    text = " ".join((tmp_path / "REPORT.md").read_text().split())
    assert "**not distinguishable**" in text and ", tied |" in (results / "report" / "metrics.md").read_text()


def test_the_winner_is_named_in_a_file_and_in_the_report(built):
    report_dir, text = built
    best = json.loads((report_dir / "best.json").read_text())
    # v-c-96 ranks first; of its seeds, seed 1 chose an epoch scoring 0.91 on the selection images, seed 0 0.89
    assert (best["variant"], best["seed"], best["split"]) == ("v-c-96", 1, "val")
    assert best["model"].endswith("results/models/v-c-96/seed-1/model.pt") and Path(best["model"]).parent.is_dir()
    # each variant's second seed scored higher on the selection images (VARIANTS)
    assert best["best_seed_of"] == {"v-a-64": 1, "v-b-64": 1, "v-c-96": 1}
    assert Path(best["results"]) / "models" / "v-c-96" / "seed-1" / "model.pt" == Path(best["model"])
    assert best["scores"]["miou"] == pytest.approx(0.90) and best["scores"]["mdice"] == pytest.approx(0.95)
    assert best["predict_command"].startswith(f"python -m cocoseg predict --model {best['model']} --images")
    use = text[text.index("## Use it"):]
    assert "**v-c-96**, seed 1" in use and best["predict_command"] in use


def test_a_flip_score_gets_its_own_column_and_definition(tmp_path):
    results = fixture_results(tmp_path)
    for path in (results / "eval").rglob("metrics.json"):
        metrics = json.loads(path.read_text())
        write_json(path, {**metrics, "miou_flip": metrics["miou"] + 0.02})
    build(results, list(VARIANTS), SEEDS, ["val"], ["train", "val"], results / "report", tmp_path / "REPORT.md",
          REPO / "workflow" / "report" / "REPORT.md.jinja", ["config/config.yaml"])
    main = (results / "report" / "metrics.md").read_text().split("\n\n")[0]
    assert main.splitlines()[0].endswith("| mIoU (flip) |")
    assert next(line for line in main.splitlines() if line.startswith("| v-c-96 ")).endswith("| 0.920 ± 0.014 |")
    assert "**mIoU (flip)**" in (tmp_path / "REPORT.md").read_text()
    assert pd.read_csv(results / "report" / "metrics.csv").set_index("variant").loc["v-a-64", "miou_flip_mean"] == \
        pytest.approx(0.82)


def test_the_winner_is_chosen_on_the_selection_images_and_scored_on_val(tmp_path):
    """Each run's score on its selection images picks the variant and seed; val's figures, which
    chose nothing, are what best.json reports, and REPORT.md says when val ranks another first."""
    results = fixture_results(tmp_path)
    selection = {"v-a-64": (0.85, 0.86), "v-b-64": (0.5, 0.6), "v-c-96": (0.84, 0.80)}
    for name, mious in selection.items():
        for seed, miou in zip(SEEDS, mious):
            write_json(results / "selection" / name / f"seed-{seed}" / "metrics.json",
                       {"miou": miou, "split": "train", "subset": "holdout", "images": 1,
                        "inference": {"mode": "slide", "stride": [40, 40], "tta": []}})
    build(results, list(VARIANTS), SEEDS, ["val"], ["train", "val"], results / "report", tmp_path / "REPORT.md",
          REPO / "workflow" / "report" / "REPORT.md.jinja", ["config/config.yaml"])
    best = json.loads((results / "report" / "best.json").read_text())
    assert (best["variant"], best["seed"]) == ("v-a-64", 1)  # 0.855 on the selection images against 0.82
    assert best["best_seed_of"] == {"v-a-64": 1, "v-b-64": 1, "v-c-96": 0}
    assert best["chosen_on"]["miou"] == pytest.approx(0.855) and best["chosen_on"]["subset"] == "holdout"
    assert best["scores"]["miou"] == pytest.approx(np.mean(VARIANTS["v-a-64"][0]))  # val's, not the selection's
    assert best["leader_on_split"] == {"variant": "v-c-96", "miou": pytest.approx(0.90)}
    text = " ".join((tmp_path / "REPORT.md").read_text().split())
    assert "It was chosen on the 1 selection images (train, holdout; mean mIoU over seeds 0.855" in text
    assert "On val itself **v-c-96** scores highest (0.900 mIoU)" in text
