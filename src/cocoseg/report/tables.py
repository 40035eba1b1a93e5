"""The report's tables: one row per run, means and spreads per variant, per class, per split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cocoseg.masks.split_folder import read_manifest_rows, read_split_summary
from cocoseg.report.statistics import pareto_front
from cocoseg.shared.manifests import OK
from cocoseg.shared.run_folders import run_path

METRICS = ["miou", "mdice", "pixel_accuracy", "miou_flip", "last_epoch_miou", "inference_images_per_s",
           "inference_peak_memory_mb", "train_seconds", "train_peak_memory_mb", "device_hours", "epoch", "disk_mb"]
TOP_CONFUSIONS = 5
MANY_CLASSES = 30  # above this, per-class plots show the most and least frequent classes only


def training_device(summary: dict) -> str:
    """The device a run trained on, marked when it was a GPU job that fell back to the CPU."""
    fell_back = summary.get("gpu_requested") and summary.get("accelerator") == "cpu"
    return summary["device"] + (" (GPU asked for, none usable)" if fell_back else "")


def runs_table(summaries: dict[tuple[str, str], dict], metrics: dict[tuple[str, str, str], dict],
               results: Path) -> pd.DataFrame:
    """One row per variant, seed and evaluation split."""
    rows = []
    for (variant, seed, split), m in metrics.items():
        s = summaries[variant, seed]
        config = s["config"]
        h, w = config["image_size"]
        selection = s["selection"]
        rows.append({
            "variant": variant, "seed": int(seed), "split": split, "architecture": config["architecture"],
            "encoder": config["encoder"], "image_size": f"{h}x{w}", "params_m": s["params"] / 1e6,
            "schedule": config["schedule"], "loss": config.get("loss", "ce"),
            "epochs": s["epochs"], "epoch": m["epoch"], "last_epoch_miou": m["last_epoch_miou"],
            "selected_on": selection["split"] + (" (holdout)" if selection["subset"] == "holdout" else ""),
            "selection_images": selection["images"],
            "same_images": selection["subset"] == "all" and selection["split"] == split,
            "train_seconds": s["train_seconds"], "device_hours": s["device_hours"],
            "device_hours_unit": s["device_hours_unit"], "device": training_device(s), "precision": s["precision"],
            "train_peak_memory_mb": s["peak_memory_mb"],
            "disk_mb": sum(s["disk_mb"].values()) if "disk_mb" in s else np.nan,  # model.pt and checkpoints kept
            "inference_images_per_s": m["inference_images_per_s"],
            "inference_peak_memory_mb": m["inference_peak_memory_mb"],
            "miou": m["miou"], "mdice": m["mdice"], "pixel_accuracy": m["pixel_accuracy"],
            "miou_flip": m.get("miou_flip", np.nan),  # scored only with evaluate.tta: [flip]
            "checkpoint": str(run_path(results, "models", variant, seed) / "model.pt"),
        })
    return pd.DataFrame(rows)


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds (std NaN with one seed), one row per variant and split."""
    keys = ["variant", "split"]
    fixed = ["architecture", "encoder", "image_size", "params_m", "schedule", "loss", "epochs", "selected_on",
             "device_hours_unit", "device", "precision"]
    grouped = runs.groupby(keys, sort=False)
    table = grouped[fixed].first()
    table["seeds"] = grouped["seed"].count()
    table["same_images"] = grouped["same_images"].any()
    for metric in METRICS:
        table[f"{metric}_mean"] = grouped[metric].mean()
        table[f"{metric}_std"] = grouped[metric].std(ddof=1)
    table["chosen_epochs"] = grouped["epoch"].apply(lambda e: ", ".join(map(str, e)))
    table["miou_per_device_hour"] = table["miou_mean"] / table["device_hours_mean"]
    table = table.reset_index()
    table["pareto"] = False
    for _, part in table.groupby("split"):
        table.loc[part.index, "pareto"] = pareto_front(part["inference_images_per_s_mean"], part["miou_mean"])
    return ranked(table)


def ranked(table: pd.DataFrame) -> pd.DataFrame:
    """Splits in the order given, and within each the variants by mean mIoU, best first: the
    ranking every table and plot of the report follows."""
    split_order = {split: i for i, split in enumerate(dict.fromkeys(table["split"]))}
    order = table.assign(split_rank=table["split"].map(split_order))
    order = order.sort_values(["split_rank", "miou_mean"], ascending=[True, False], kind="stable")
    return table.loc[order.index].reset_index(drop=True)


def ranked_variants(table: pd.DataFrame) -> list[str]:
    """Variants from best to worst on the first split (`table` as `ranked` orders it)."""
    return list(table.loc[table["split"] == table["split"].iloc[0], "variant"])


def mean_std(mean: float, std: float, digits: int = 3) -> str:
    return f"{mean:.{digits}f}" if pd.isna(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _spread(table: pd.DataFrame, metric: str, digits: int = 3) -> list[str]:
    return [mean_std(m, s, digits) for m, s in zip(table[f"{metric}_mean"], table[f"{metric}_std"])]


def main_table(table: pd.DataFrame) -> pd.DataFrame:
    """What decides between variants, mean ± std over seeds: size, cost, speed and accuracy."""
    columns = {"Variant": table["variant"]}
    if table["split"].nunique() > 1:
        columns["Split"] = table["split"]
    columns.update({
        "Params (M)": table["params_m"].map("{:.1f}".format),
        "Cost": [f"{h:.3f} {unit}" for h, unit in zip(table["device_hours_mean"], table["device_hours_unit"])],
        "Images/s": _spread(table, "inference_images_per_s", 1),
        "mIoU": _spread(table, "miou"), "95% interval": intervals(table, "miou_low", "miou_high"),
        "vs best (95% interval)": differences_from_best(table),
        "mDice": _spread(table, "mdice"), "Pixel accuracy": _spread(table, "pixel_accuracy"),
    })
    if table["miou_flip_mean"].notna().any():
        columns["mIoU (flip)"] = ["-" if pd.isna(m) else text for m, text in
                                  zip(table["miou_flip_mean"], _spread(table, "miou_flip"))]
    return pd.DataFrame(columns)


def intervals(table: pd.DataFrame, low: str, high: str) -> list[str]:
    """`[low, high]` per row, or `n/a` where the bootstrap could not run (its note says why)."""
    if low not in table:
        return ["n/a"] * len(table)
    return ["n/a" if pd.isna(lo) else f"[{lo:.3f}, {hi:.3f}]" for lo, hi in zip(table[low], table[high])]


def differences_from_best(table: pd.DataFrame) -> list[str]:
    """Each variant's mIoU difference from its split's best, with its interval; the best says so,
    and a variant not told apart from the best says that too."""
    if "diff_low" not in table:
        return ["n/a"] * len(table)
    cells, seen = [], set()
    for row, interval in zip(table.itertuples(), intervals(table, "diff_low", "diff_high")):
        if row.split not in seen:  # `table` is ranked: each split's first row is its best
            seen.add(row.split)
            cells.append("best")
        elif interval == "n/a":
            cells.append("n/a")
        else:
            tied = "" if row.distinguishable_from_best else ", tied"
            cells.append(f"{row.diff_from_best:+.3f} {interval}{tied}")
    return cells


def effects_table(effects: pd.DataFrame) -> pd.DataFrame:
    """`statistics.main_effects` as a reader sees it."""
    return pd.DataFrame({
        "Split": effects["split"], "Setting": effects["setting"], "Value": effects["value"],
        "Variants": effects["variants"], "mIoU": _spread(effects, "miou"),
        "Setting's range": effects["setting_range"].map("{:.3f}".format),
    })


def details_table(table: pd.DataFrame) -> pd.DataFrame:
    """How each variant was built, trained and chosen, in a model zoo's columns (MMSegmentation style)."""
    return pd.DataFrame({
        "Variant": table["variant"], "Split": table["split"], "Method": table["architecture"],
        "Backbone": table["encoder"], "Crop size": table["image_size"],
        "Schedule": [f"{schedule}, {epochs} epochs" for schedule, epochs in zip(table["schedule"], table["epochs"])],
        "Loss": table["loss"], "Seeds": table["seeds"], "Train memory (MiB)": table["train_peak_memory_mb_mean"].map("{:.0f}".format),
        "Train time (min)": [mean_std(m / 60, s / 60, 1) for m, s in
                             zip(table["train_seconds_mean"], table["train_seconds_std"])],
        "mIoU per device-hour": table["miou_per_device_hour"].map("{:.1f}".format),
        "mIoU 95% interval": intervals(table, "miou_low", "miou_high"),
        "Selected on": table["selected_on"], "Chosen epochs": table["chosen_epochs"],
        "mIoU, last epoch": _spread(table, "last_epoch_miou"),
    })


def per_class_tables(per_class: dict[tuple[str, str, str], pd.DataFrame], single_split: bool
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-seed IoU per class (long) and its mean and std per variant (wide, classes as rows)."""
    rows = [frame.assign(variant=variant, seed=int(seed), split=split)
            for (variant, seed, split), frame in per_class.items()]
    long = pd.concat(rows, ignore_index=True)[["name", "variant", "split", "seed", "iou", "label_pixels"]]
    long["column"] = long["variant"] if single_split else long["variant"] + " (" + long["split"] + ")"
    grouped = long.groupby(["name", "column"], sort=False)["iou"]
    order = list(dict.fromkeys(long["name"]))
    mean = grouped.mean().unstack("column").reindex(order)[list(dict.fromkeys(long["column"]))]
    std = grouped.std(ddof=1).unstack("column").reindex(order)[mean.columns]
    wide = pd.concat({"mean": mean, "std": std}, axis=1)
    wide.columns = [name if stat == "mean" else f"{name} std" for stat, name in wide.columns]
    return long.drop(columns="column"), wide[[c for name in mean.columns for c in (name, f"{name} std")]]


def label_shares(confusion: np.ndarray) -> np.ndarray:
    """Each row of a confusion matrix as shares of that label's pixels."""
    counts = np.asarray(confusion, dtype=np.float64)
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)


def top_confusions(confusion: np.ndarray, names: list[str], k: int = TOP_CONFUSIONS) -> pd.DataFrame:
    """The k largest off-diagonal shares of a confusion matrix: label -> predicted, share of the label's pixels."""
    counts = np.asarray(confusion)
    shares = label_shares(counts)
    np.fill_diagonal(shares, 0)
    order = np.argsort(-shares, axis=None, kind="stable")[:k]
    rows = [(names[i], names[j], shares[i, j], int(counts[i, j])) for i, j in zip(*np.unravel_index(order, shares.shape))
            if shares[i, j] > 0]
    return pd.DataFrame(rows, columns=["label", "predicted", "share", "pixels"])


def dataset_table(split_dirs: dict[str, Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per split: images, skips with reasons, held-out images, instances; and pixel share per class.

    Reads the manifests and summaries only: never a mask (COCO train has 118k of them).
    """
    rows, shares = [], {}
    for split, split_dir in split_dirs.items():
        rows_of_manifest = read_manifest_rows(split_dir / "manifest.csv")
        manifest = pd.DataFrame(rows_of_manifest)
        summary = read_split_summary(split_dir)
        skipped = manifest[manifest["status"] != OK]
        reasons = skipped["reason"].str.split(":").str[0].value_counts()
        rows.append({
            "split": split, "images": len(manifest), "ok": summary["ok"], "skipped": summary["skipped"],
            "held_out": int((manifest["holdout"] == "1").sum()),
            "instances": int(manifest.loc[manifest["status"] == OK, "annotations"].astype(int).sum()),
            "orphan_annotations": summary["orphan_annotations"],
            "skip_reasons": "; ".join(f"{reason} ({n})" for reason, n in reasons.items()) or "none",
        })
        pixels = pd.Series(summary["class_pixels"], dtype="int64")  # counted by the mask stage
        shares[split] = pixels / max(1, pixels.sum())
    return pd.DataFrame(rows), pd.DataFrame(shares)


def class_order(frequency: pd.Series) -> list[str]:
    """The report's one class order, used by every class table and plot: most frequent first,
    ties in label order."""
    return list(frequency.sort_values(ascending=False, kind="stable").index)


def shown_classes(frequency: pd.Series, limit: int = MANY_CLASSES) -> tuple[list[str], str]:
    """All classes by frequency, or the most and least frequent halves of `limit` when there are more."""
    ordered = class_order(frequency)
    if len(ordered) <= limit:
        return ordered, ""
    half = limit // 2
    return ordered[:half] + ordered[-half:], f" ({half} most and {half} least frequent of {len(ordered)} classes)"
