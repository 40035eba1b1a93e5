"""Comparison tables, plots and REPORT.md from a workflow's results folder.

Everything here reads files the earlier stages wrote; no number is typed in by hand. The
narrative lives in the Jinja template (`workflow/report/REPORT.md.jinja`).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import jinja2
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from PIL import Image

from .coco import read_json
from .files import atomic_path, read_csv

PLOTS = {
    "metrics_bars": "mIoU, mDice and pixel accuracy per variant",
    "speed_accuracy": "inference speed against mIoU, Pareto front marked",
    "per_class_iou": "IoU per class and variant",
    "training_curves": "training loss and validation mIoU per epoch",
    "class_frequency": "share of labelled pixels per class and split",
    "confusion_best": "normalised confusion matrix of the best variant",
    "samples": "image, ground truth and prediction for sample images",
}


def metrics_table(summaries: dict[str, dict], metrics: dict[tuple[str, str], dict], results: Path) -> pd.DataFrame:
    """One row per variant and evaluation split."""
    rows = []
    for (variant, split), m in metrics.items():
        s = summaries[variant]
        config = s["config"]
        h, w = config["image_size"]
        rows.append({
            "variant": variant, "split": split, "architecture": config["architecture"],
            "encoder": config["encoder"], "image_size": f"{h}x{w}", "params_m": s["params"] / 1e6,
            "epochs": s["epochs"], "train_seconds": s["train_seconds"], "device": s["device"],
            "precision": s["precision"], "train_peak_memory_mb": s["peak_memory_mb"],
            "inference_images_per_s": m["inference_images_per_s"],
            "inference_peak_memory_mb": m["inference_peak_memory_mb"],
            "miou": m["miou"], "mdice": m["mdice"], "pixel_accuracy": m["pixel_accuracy"],
            "checkpoint": str(Path(results) / "models" / variant / "model.pt"),
        })
    return pd.DataFrame(rows)


def pareto_front(speed: pd.Series, accuracy: pd.Series) -> pd.Series:
    """True where no other point is at least as fast and as accurate, and strictly better in one."""
    s, a = speed.to_numpy(), accuracy.to_numpy()
    dominated = [bool(((s >= s[i]) & (a >= a[i]) & ((s > s[i]) | (a > a[i]))).any()) for i in range(len(s))]
    return pd.Series(np.logical_not(dominated), index=speed.index)


def markdown(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def zoo_table(table: pd.DataFrame) -> pd.DataFrame:
    """The metrics in a model zoo's columns (MMSegmentation's README style)."""
    return pd.DataFrame({
        "Method": table["architecture"], "Backbone": table["encoder"], "Crop size": table["image_size"],
        "Schedule": table["epochs"].map(lambda e: f"{e} epochs"),
        "Params (M)": table["params_m"].map("{:.1f}".format),
        "Train mem (MiB)": table["train_peak_memory_mb"].map("{:.0f}".format),
        "Train time": table["train_seconds"].map(lambda s: f"{s / 60:.1f} min"),
        "Inf (img/s)": table["inference_images_per_s"].map("{:.1f}".format),
        "Split": table["split"], "mIoU": table["miou"].map("{:.3f}".format),
        "mDice": table["mdice"].map("{:.3f}".format), "aAcc": table["pixel_accuracy"].map("{:.3f}".format),
        "Config": table["variant"], "Checkpoint": table["checkpoint"],
    })


def per_class_iou(per_class: dict[tuple[str, str], pd.DataFrame], single_split: bool) -> pd.DataFrame:
    columns = {variant if single_split else f"{variant} ({split})": frame.set_index("name")["iou"]
               for (variant, split), frame in per_class.items()}
    return pd.DataFrame(columns)


def class_pixels(split_dir: Path, manifest: list[dict]) -> pd.Series:
    """Labelled pixels per class over every usable mask of a split (255 left out)."""
    labels = read_csv(split_dir / "labels.csv")
    counts = np.zeros(256, dtype=np.int64)
    for row in manifest:
        if row["status"] == "ok":
            with Image.open(split_dir / "masks" / row["mask"]) as im:
                counts += np.bincount(np.asarray(im).ravel(), minlength=256)
    return pd.Series({label["name"]: int(counts[int(label["label"])]) for label in labels})


def dataset_table(split_dirs: dict[str, Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per split: images, skips with reasons, instances; and pixel share per class."""
    rows, shares = [], {}
    for split, split_dir in split_dirs.items():
        rows_of_manifest = read_csv(split_dir / "manifest.csv")
        manifest = pd.DataFrame(rows_of_manifest)
        summary = read_json(split_dir / "summary.json")
        skipped = manifest[manifest["status"] == "skipped"]
        reasons = skipped["reason"].str.split(":").str[0].value_counts()
        rows.append({
            "split": split, "images": len(manifest), "ok": summary["ok"], "skipped": summary["skipped"],
            "instances": int(manifest.loc[manifest["status"] == "ok", "annotations"].astype(int).sum()),
            "orphan_annotations": summary["orphan_annotations"],
            "skip_reasons": "; ".join(f"{reason} ({n})" for reason, n in reasons.items()) or "none",
        })
        pixels = class_pixels(split_dir, rows_of_manifest)
        shares[split] = pixels / max(1, pixels.sum())
    return pd.DataFrame(rows), pd.DataFrame(shares)


def _save(fig: plt.Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_metrics_bars(table: pd.DataFrame, path: Path) -> None:
    long = table.melt(id_vars=["variant", "split"], value_vars=["miou", "mdice", "pixel_accuracy"],
                      var_name="metric", value_name="score")
    long["metric"] = long["metric"].map({"miou": "mIoU", "mdice": "mDice", "pixel_accuracy": "pixel accuracy"})
    grid = sns.catplot(long, kind="bar", x="metric", y="score", hue="variant", col="split", height=3.6, aspect=1.3)
    grid.set(ylim=(0, 1))
    _save(grid.figure, path)


def plot_speed_accuracy(table: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.scatterplot(table, x="inference_images_per_s", y="miou", hue="variant", style="split", s=90, ax=ax)
    for split, part in table.groupby("split"):
        front = part[pareto_front(part["inference_images_per_s"], part["miou"])].sort_values("inference_images_per_s")
        ax.plot(front["inference_images_per_s"], front["miou"], "--", color="grey", label=f"Pareto front ({split})")
    ax.set(xlabel="inference images/s (batch 1)", ylabel="mIoU")
    ax.legend(fontsize=7)
    _save(fig, path)


def plot_per_class_iou(per_class: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(2 + 1.2 * per_class.shape[1], 1 + 0.22 * per_class.shape[0]))
    sns.heatmap(per_class.astype(float), annot=per_class.shape[0] <= 30, fmt=".2f", vmin=0, vmax=1,
                cmap="viridis", ax=ax)
    ax.set(xlabel="", ylabel="class")
    _save(fig, path)


def plot_training_curves(summaries: dict[str, dict], path: Path) -> None:
    rows = [{"variant": v, **row} for v, s in summaries.items() for row in s["history"]]
    frame = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    sns.lineplot(frame, x="epoch", y="train_loss", hue="variant", marker="o", ax=axes[0])
    sns.lineplot(frame, x="epoch", y="val_miou", hue="variant", marker="o", ax=axes[1])
    axes[0].set(ylabel="training loss (epoch mean)")
    axes[1].set(ylabel="validation mIoU (whole split)", ylim=(0, 1))
    _save(fig, path)


def plot_class_frequency(shares: pd.DataFrame, path: Path) -> None:
    long = shares.rename_axis("class").reset_index().melt(id_vars="class", var_name="split", value_name="share")
    fig, ax = plt.subplots(figsize=(max(6, 0.25 * len(shares)), 3.6))
    sns.barplot(long, x="class", y="share", hue="split", ax=ax)
    ax.set(yscale="log", ylabel="share of labelled pixels")
    ax.tick_params(axis="x", rotation=90)
    _save(fig, path)


def plot_confusion(confusion: pd.DataFrame, names: list[str], title: str, path: Path) -> None:
    counts = confusion.to_numpy(dtype=np.float64)
    normalised = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.5 + 0.45 * len(names), 1 + 0.4 * len(names)))
    sns.heatmap(pd.DataFrame(normalised, index=names, columns=names), vmin=0, vmax=1, cmap="Blues",
                annot=len(names) <= 15, fmt=".2f", ax=ax)
    ax.set(xlabel="predicted", ylabel="label", title=title)
    _save(fig, path)


def plot_samples(sample_dirs: dict[str, Path], path: Path, per_variant: int = 4) -> None:
    """Rows: sample images; columns: variants; each cell image | ground truth | prediction."""
    names = sorted({p.name for d in sample_dirs.values() for p in d.glob("*.png")})[:per_variant]
    fig, axes = plt.subplots(max(1, len(names)), len(sample_dirs), squeeze=False,
                             figsize=(4.2 * len(sample_dirs), 1.6 * max(1, len(names))))
    for col, (variant, directory) in enumerate(sample_dirs.items()):
        axes[0, col].set_title(f"{variant}\nimage | ground truth | prediction", fontsize=8)
        for row, name in enumerate(names):
            if (directory / name).exists():
                axes[row, col].imshow(Image.open(directory / name))
            axes[row, col].axis("off")
    _save(fig, path)


def machine_description() -> str:
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def build(results: Path, variants: list[str], eval_splits: list[str], data_splits: list[str], out_dir: Path,
          report_md: Path, template: Path, command: str) -> None:
    """Write tables and plots under `out_dir` and render `report_md` from `template`."""
    results, out_dir = Path(results), Path(out_dir)
    summaries = {v: read_json(results / "models" / v / "summary.json") for v in variants}
    metrics = {(v, s): read_json(results / "eval" / v / s / "metrics.json") for v in variants for s in eval_splits}
    per_class = {(v, s): pd.DataFrame(read_csv(results / "eval" / v / s / "per_class.csv"))
                 .assign(iou=lambda f: pd.to_numeric(f["iou"])) for v in variants for s in eval_splits}

    table = metrics_table(summaries, metrics, results)
    table["pareto"] = False
    for split, part in table.groupby("split"):
        table.loc[part.index, "pareto"] = pareto_front(part["inference_images_per_s"], part["miou"])
    classes = per_class_iou(per_class, single_split=len(eval_splits) == 1)
    datasets, shares = dataset_table({s: results / "masks" / s for s in data_splits})

    tables = {"metrics.csv": table, "per_class_iou.csv": classes.rename_axis("class").reset_index(),
              "dataset_stats.csv": datasets, "class_pixel_share.csv": shares.rename_axis("class").reset_index()}
    for name, frame in tables.items():
        with atomic_path(out_dir / name) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6g")
    zoo = markdown(zoo_table(table))
    with atomic_path(out_dir / "metrics.md") as tmp:
        tmp.write_text(zoo + "\n", encoding="utf-8")

    best = table.sort_values(["split", "miou"], ascending=[True, False]).iloc[0]
    confusion = pd.DataFrame(read_csv(results / "eval" / best["variant"] / best["split"] / "confusion.csv")).drop(columns="label")
    names = list(classes.index)
    plots = out_dir / "plots"
    plot_metrics_bars(table, plots / "metrics_bars.png")
    plot_speed_accuracy(table, plots / "speed_accuracy.png")
    plot_per_class_iou(classes, plots / "per_class_iou.png")
    plot_training_curves(summaries, plots / "training_curves.png")
    plot_class_frequency(shares, plots / "class_frequency.png")
    plot_confusion(confusion, names, f"{best['variant']} on {best['split']}", plots / "confusion_best.png")
    plot_samples({v: results / "eval" / v / eval_splits[0] / "samples" for v in variants}, plots / "samples.png")

    relative = Path(os.path.relpath(out_dir, Path(report_md).parent))
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(template).parent),
                                     undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    text = environment.get_template(Path(template).name).render(
        command=command, machine=machine_description(), zoo=zoo, best=best, table=table,
        summaries=summaries, variants=variants, eval_splits=eval_splits,
        datasets=markdown(datasets), class_table=markdown(classes.round(3).astype(object).where(classes.notna(), "-")
                             .rename_axis("class").reset_index()),
        plots={name: (relative / "plots" / f"{name}.png").as_posix() for name in PLOTS}, plot_titles=PLOTS,
        tables={name: (relative / name).as_posix() for name in tables},
        pareto=list(table.loc[table["pareto"], "variant"]),
    )
    with atomic_path(report_md) as tmp:
        tmp.write_text(text, encoding="utf-8")
