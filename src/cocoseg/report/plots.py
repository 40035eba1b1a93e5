"""The report's plots, drawn from its tables (seaborn, written as PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch
import pandas as pd
import seaborn as sns
from PIL import Image

from ..colours import palette
from ..files import atomic_path
from .tables import MANY_CLASSES, label_shares


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


def error_bar(mean: float, std: float) -> list[list[float]]:
    """Below and above `mean` for a ± std bar of a quantity that cannot be negative: never below 0."""
    std = float(np.nan_to_num(std))
    return [[min(std, max(0.0, mean))], [std]]


def _legend_outside(ax: plt.Axes) -> None:
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)


def _means_with_error_bars(table: pd.DataFrame, x: str, ax: plt.Axes) -> None:
    for variant, row in table.set_index("variant").iterrows():
        ax.errorbar(row[f"{x}_mean"], row["miou_mean"], xerr=error_bar(row[f"{x}_mean"], row[f"{x}_std"]),
                    yerr=error_bar(row["miou_mean"], row["miou_std"]), fmt="o", capsize=3,
                    label=f"{variant} ({row['split']})")


def plot_speed_accuracy(table: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    _means_with_error_bars(table, "inference_images_per_s", ax)
    for split, part in table.groupby("split"):
        front = part[part["pareto"]].sort_values("inference_images_per_s_mean")
        ax.plot(front["inference_images_per_s_mean"], front["miou_mean"], "--", color="grey",
                label=f"Pareto front ({split})")
    ax.set(xlabel="inference images/s (batch 1)", ylabel="mIoU (mean ± std over seeds)")
    _legend_outside(ax)
    _save(fig, path)


def plot_cost_accuracy(table: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    _means_with_error_bars(table, "device_hours", ax)
    ax.set(xlabel=f"training cost ({' / '.join(table['device_hours_unit'].unique())}, mean ± std)",
           ylabel="mIoU (mean ± std over seeds)")
    _legend_outside(ax)
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
    axes[0].get_legend().remove()
    _legend_outside(axes[1])
    _save(fig, path)


def plot_class_frequency(shares: pd.DataFrame, order: list[str], path: Path) -> None:
    """Pixel share of each class per split, classes in `order` (the report's one class order)."""
    shares = shares.reindex([name for name in order if name in shares.index])
    long = shares.rename_axis("class").reset_index().melt(id_vars="class", var_name="split", value_name="share")
    fig, ax = plt.subplots(figsize=(max(6, 0.25 * len(shares)), 3.6))
    sns.barplot(long, x="class", y="share", hue="split", ax=ax)
    ax.set(yscale="log", ylabel="share of labelled pixels")
    ax.tick_params(axis="x", rotation=90)
    _save(fig, path)


def plot_confusion(confusion: np.ndarray, names: list[str], order: list[str], title: str, path: Path) -> None:
    """Shares of each label's pixels by predicted class; the first 20 classes of `order` (the
    report's one class order, most frequent first)."""
    normalised = pd.DataFrame(label_shares(confusion), index=names, columns=names)
    shown = [name for name in order if name in names][:20]
    note = f" (the 20 most frequent of {len(names)} classes)" if len(names) > 20 else ""
    normalised = normalised.loc[shown, shown]
    fig, ax = plt.subplots(figsize=(1.5 + 0.45 * len(shown), 1 + 0.4 * len(shown)))
    sns.heatmap(normalised, vmin=0, vmax=1, cmap="Blues", annot=len(shown) <= 15, fmt=".2f", ax=ax)
    ax.set(xlabel="predicted", ylabel="label", title=title + note)
    _save(fig, path)


def plot_samples(sample_dirs: dict[str, Path], labels: list[str], path: Path, per_variant: int = 4) -> None:
    """Rows: sample images; columns: variants; each cell image | ground truth | prediction, with
    the colour of each label (`labels` in label order) in a legend."""
    names = sorted({p.name for d in sample_dirs.values() for p in d.glob("*.png")})[:per_variant]
    fig, axes = plt.subplots(max(1, len(names)), len(sample_dirs), squeeze=False,
                             figsize=(4.2 * len(sample_dirs), 1.6 * max(1, len(names))))
    for col, (variant, directory) in enumerate(sample_dirs.items()):
        axes[0, col].set_title(f"{variant}\nimage | ground truth | prediction", fontsize=8)
        for row, name in enumerate(names):
            if (directory / name).exists():
                axes[row, col].imshow(Image.open(directory / name))
            axes[row, col].axis("off")
    colours = palette(len(labels))
    handles = [Patch(facecolor=colours[i] / 255, edgecolor="grey", label=name) for i, name in enumerate(labels)]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=7, frameon=False,
               bbox_to_anchor=(0.5, -0.02 - 0.03 * ((len(handles) - 1) // 8)))
    _save(fig, path)
