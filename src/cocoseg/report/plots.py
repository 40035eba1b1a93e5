"""The report's plots, drawn from its tables (seaborn, written as PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from PIL import Image

from ..files import atomic_path
from .tables import MANY_CLASSES, label_shares, shown_classes


def _save(fig: plt.Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_metrics_bars(runs: pd.DataFrame, path: Path) -> None:
    long = runs.melt(id_vars=["variant", "split"], value_vars=["miou", "mdice", "pixel_accuracy"],
                     var_name="metric", value_name="score")
    long["metric"] = long["metric"].map({"miou": "mIoU", "mdice": "mDice", "pixel_accuracy": "pixel accuracy"})
    grid = sns.catplot(long, kind="bar", x="metric", y="score", hue="variant", col="split", errorbar="sd",
                       capsize=0.1, height=3.6, aspect=1.3)
    grid.set(ylim=(0, 1))
    _save(grid.figure, path)


def _means_with_error_bars(table: pd.DataFrame, x: str, ax: plt.Axes) -> None:
    for variant, row in table.set_index("variant").iterrows():
        ax.errorbar(row[f"{x}_mean"], row["miou_mean"], xerr=np.nan_to_num(row[f"{x}_std"]),
                    yerr=np.nan_to_num(row["miou_std"]), fmt="o", capsize=3, label=f"{variant} ({row['split']})")


def plot_speed_accuracy(table: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    _means_with_error_bars(table, "inference_images_per_s", ax)
    for split, part in table.groupby("split"):
        front = part[part["pareto"]].sort_values("inference_images_per_s_mean")
        ax.plot(front["inference_images_per_s_mean"], front["miou_mean"], "--", color="grey",
                label=f"Pareto front ({split})")
    ax.set(xlabel="inference images/s (batch 1)", ylabel="mIoU (mean ± std over seeds)")
    ax.legend(fontsize=7)
    _save(fig, path)


def plot_cost_accuracy(table: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    _means_with_error_bars(table, "device_hours", ax)
    ax.set(xlabel=f"training cost ({' / '.join(table['device_hours_unit'].unique())}, mean ± std)",
           ylabel="mIoU (mean ± std over seeds)")
    ax.legend(fontsize=7)
    _save(fig, path)


def plot_per_class_iou(per_class: pd.DataFrame, shown: list[str], note: str, path: Path) -> None:
    """Mean IoU of the `shown` classes (see `shown_classes`), in that order."""
    means = per_class.loc[shown, [c for c in per_class.columns if not c.endswith(" std")]].astype(float)
    fig, ax = plt.subplots(figsize=(2 + 1.2 * means.shape[1], 1 + 0.22 * means.shape[0]))
    sns.heatmap(means, annot=means.shape[0] <= MANY_CLASSES, fmt=".2f", vmin=0, vmax=1, cmap="viridis", ax=ax)
    ax.set(xlabel="", ylabel="class, most frequent first", title=f"IoU, mean over seeds{note}")
    _save(fig, path)


def plot_training_curves(summaries: dict[tuple[str, str], dict], path: Path) -> None:
    rows = [{"variant": v, "seed": seed, **row} for (v, seed), s in summaries.items() for row in s["history"]]
    frame = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    sns.lineplot(frame, x="epoch", y="train_loss", hue="variant", errorbar="sd", marker="o", ax=axes[0])
    sns.lineplot(frame, x="epoch", y="val_miou", hue="variant", errorbar="sd", marker="o", ax=axes[1])
    axes[0].set(ylabel="training loss (epoch mean)")
    axes[1].set(ylabel="selection mIoU (whole split)", ylim=(0, 1))
    _save(fig, path)


def plot_class_frequency(shares: pd.DataFrame, path: Path) -> None:
    long = shares.rename_axis("class").reset_index().melt(id_vars="class", var_name="split", value_name="share")
    fig, ax = plt.subplots(figsize=(max(6, 0.25 * len(shares)), 3.6))
    sns.barplot(long, x="class", y="share", hue="split", ax=ax)
    ax.set(yscale="log", ylabel="share of labelled pixels")
    ax.tick_params(axis="x", rotation=90)
    _save(fig, path)


def plot_confusion(confusion: np.ndarray, names: list[str], title: str, path: Path) -> None:
    normalised = pd.DataFrame(label_shares(confusion), index=names, columns=names)
    shown, note = shown_classes(pd.Series(np.asarray(confusion).sum(axis=1), index=names), limit=20)
    normalised = normalised.loc[shown, shown]
    fig, ax = plt.subplots(figsize=(1.5 + 0.45 * len(shown), 1 + 0.4 * len(shown)))
    sns.heatmap(normalised, vmin=0, vmax=1, cmap="Blues", annot=len(shown) <= 15, fmt=".2f", ax=ax)
    ax.set(xlabel="predicted", ylabel="label", title=title + note)
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
