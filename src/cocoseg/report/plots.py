"""The report's plots, drawn from its tables (seaborn, written as PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Patch
from PIL import Image

from cocoseg.report.tables import MANY_CLASSES, label_shares
from cocoseg.shared.colours import palette
from cocoseg.shared.files import atomic_path


def _save(fig: plt.Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def _empty(path: Path, message: str) -> None:
    """A figure that says why there is nothing to draw, so every declared plot exists."""
    fig, ax = plt.subplots(figsize=(6, 1))
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=9)
    ax.axis("off")
    _save(fig, path)


def _rows_height(rows: int, per_row: float = 0.28, least: float = 3.0) -> float:
    """A figure height that gives each of `rows` labelled rows room, so names never overlap."""
    return max(least, 1.0 + per_row * rows)


METRIC_NAMES = {"miou": "mIoU", "mdice": "mDice", "pixel_accuracy": "pixel accuracy"}


def _bar_errors(part: pd.DataFrame, metric: str) -> tuple[np.ndarray, str]:
    """Below and above each bar: mIoU's bootstrap interval where every variant has one, else
    one standard deviation over seeds (never below 0)."""
    mean = part[f"{metric}_mean"].to_numpy()
    if metric == "miou" and "miou_low" in part and part["miou_low"].notna().all():
        return np.vstack([mean - part["miou_low"], part["miou_high"] - mean]).clip(min=0), "95% interval"
    std = np.nan_to_num(part[f"{metric}_std"].to_numpy())
    return np.vstack([np.minimum(std, mean), std]), "± std over seeds"


def plot_metrics_bars(table: pd.DataFrame, path: Path) -> None:
    """Horizontal bars, one row per variant in the table's (ranked) order, one panel per metric
    and split; each panel's title says what its error bars are."""
    splits = list(dict.fromkeys(table["split"]))
    rows = table[table["split"] == splits[0]].shape[0]
    fig, axes = plt.subplots(len(splits), len(METRIC_NAMES), squeeze=False, sharex=True,
                             figsize=(4 + 2.8 * len(METRIC_NAMES), _rows_height(rows) * len(splits)))
    for row_axes, split in zip(axes, splits):
        part = table[table["split"] == split]
        for ax, (metric, name) in zip(row_axes, METRIC_NAMES.items()):
            errors, meaning = _bar_errors(part, metric)
            ax.barh(part["variant"], part[f"{metric}_mean"], xerr=errors, capsize=3, color="tab:blue")
            ax.set_title(f"{split}: {name} ({meaning})", fontsize=9)
            ax.invert_yaxis()  # best on top
            ax.set_xlim(0, 1)
            if ax is not row_axes[0]:
                ax.set_yticklabels([])
    fig.tight_layout()
    _save(fig, path)


def error_bar(mean: float, std: float) -> list[list[float]]:
    """Below and above `mean` for a ± std bar of a quantity that cannot be negative: never below 0."""
    std = float(np.nan_to_num(std))
    return [[min(std, max(0.0, mean))], [std]]


def _legend_outside(ax: plt.Axes) -> None:
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)


MARKERS = "osD^vP*X"


def _means_with_error_bars(table: pd.DataFrame, x: str, ax: plt.Axes) -> None:
    """One point per variant and split, in the table's (ranked) order; colour and marker change
    together so that up to 80 entries of the legend stay distinct."""
    colours = plt.get_cmap("tab10").colors
    for i, (variant, row) in enumerate(table.set_index("variant").iterrows()):
        ax.errorbar(row[f"{x}_mean"], row["miou_mean"], xerr=error_bar(row[f"{x}_mean"], row[f"{x}_std"]),
                    yerr=error_bar(row["miou_mean"], row["miou_std"]), fmt=MARKERS[i // 10 % len(MARKERS)],
                    color=colours[i % 10], capsize=3, label=f"{variant} ({row['split']})")


def _accuracy_figure(table: pd.DataFrame) -> tuple[plt.Figure, plt.Axes]:
    return plt.subplots(figsize=(6, _rows_height(len(table) + table["split"].nunique(), 0.2, 4)))


def plot_speed_accuracy(table: pd.DataFrame, path: Path) -> None:
    fig, ax = _accuracy_figure(table)
    _means_with_error_bars(table, "inference_images_per_s", ax)
    for split, part in table.groupby("split"):
        front = part[part["pareto"]].sort_values("inference_images_per_s_mean")
        ax.plot(front["inference_images_per_s_mean"], front["miou_mean"], "--", color="grey",
                label=f"Pareto front ({split})")
    ax.set(xlabel="inference images/s (batch 1)", ylabel="mIoU (mean ± std over seeds)")
    _legend_outside(ax)
    _save(fig, path)


def plot_cost_accuracy(table: pd.DataFrame, path: Path) -> None:
    fig, ax = _accuracy_figure(table)
    _means_with_error_bars(table, "device_hours", ax)
    ax.set(xlabel=f"training cost ({' / '.join(table['device_hours_unit'].unique())}, mean ± std)",
           ylabel="mIoU (mean ± std over seeds)")
    _legend_outside(ax)
    _save(fig, path)


def plot_main_effects(effects: pd.DataFrame, path: Path) -> None:
    """One panel per setting, the setting that moves mIoU most first: the mean mIoU of each of
    its values over the other settings, ± the spread between those variants."""
    if effects.empty:
        _empty(path, "No setting differs between the variants: nothing to compare.")
        return
    settings = list(dict.fromkeys(effects["setting"]))
    fig, axes = plt.subplots(1, len(settings), sharey=True, squeeze=False,
                             figsize=(0.6 + sum(1 + 0.5 * effects.loc[effects["setting"] == s, "value"].nunique()
                                                for s in settings), 3.6))
    for ax, setting in zip(axes[0], settings):
        part = effects[effects["setting"] == setting]
        for split, rows in part.groupby("split", sort=False):
            ax.errorbar(rows["value"], rows["miou_mean"], yerr=rows["miou_std"].fillna(0), fmt="o", capsize=3,
                        label=split)
        ax.set_title(f"{setting}\n(range {part['setting_range'].max():.3f})", fontsize=9)
        ax.tick_params(axis="x", rotation=45, labelsize=8)
        ax.set_xmargin(0.3)
    axes[0, 0].set_ylabel("mIoU, mean over the other settings")
    if effects["split"].nunique() > 1:
        _legend_outside(axes[0, -1])
    _save(fig, path)


def plot_interactions(interactions: pd.DataFrame, path: Path) -> None:
    """One small heatmap per pair of settings tried in every combination: mean mIoU of each pair
    of values, over the other settings (first split only, as the ranking)."""
    if interactions.empty:
        _empty(path, "No two settings were tried in every combination: no interaction to show.")
        return
    first = interactions[interactions["split"] == interactions["split"].iloc[0]]
    pairs = list(dict.fromkeys(zip(first["setting_a"], first["setting_b"])))
    columns = min(3, len(pairs))
    rows = -(-len(pairs) // columns)
    fig, axes = plt.subplots(rows, columns, squeeze=False, figsize=(4.2 * columns, 3.4 * rows))
    for ax, (a, b) in zip(axes.flat, pairs):
        cells = first[(first["setting_a"] == a) & (first["setting_b"] == b)]
        grid = cells.pivot(index="value_a", columns="value_b", values="miou_mean")
        sns.heatmap(grid, annot=grid.size <= 64, fmt=".3f", cmap="viridis", ax=ax, annot_kws={"size": 8})
        ax.set(xlabel=b, ylabel=a, title=f"mIoU on {first['split'].iloc[0]}")
        ax.tick_params(axis="x", rotation=45, labelsize=8)
        ax.tick_params(axis="y", rotation=0, labelsize=8)
    for ax in list(axes.flat)[len(pairs):]:
        ax.axis("off")
    fig.tight_layout()
    _save(fig, path)


def plot_per_class_iou(per_class: pd.DataFrame, shown: list[str], note: str, path: Path) -> None:
    """Mean IoU of the `shown` classes (see `shown_classes`), in that order; one column per
    variant, in the order of `per_class`'s columns."""
    means = per_class.loc[shown, [c for c in per_class.columns if not c.endswith(" std")]].astype(float)
    annotate = means.shape[0] <= MANY_CLASSES
    fig, ax = plt.subplots(figsize=(max(5.0, 2.5 + 0.55 * means.shape[1]), 1.5 + 0.22 * means.shape[0]))
    sns.heatmap(means, annot=annotate, fmt=".2f", vmin=0, vmax=1, cmap="viridis", ax=ax, annot_kws={"size": 7})
    ax.set(xlabel="", ylabel="class, most frequent first")
    ax.set_title("IoU, mean over seeds" + (f"\n{note.strip()}" if note else ""), fontsize=10)
    ax.tick_params(axis="x", rotation=90, labelsize=8)
    ax.tick_params(axis="y", labelsize=8)
    _save(fig, path)


MOST_CURVES = 8  # training curves and samples of more variants than this show the best ones only


def plot_training_curves(summaries: dict[tuple[str, str], dict], order: list[str], path: Path) -> None:
    """Loss and selection mIoU per epoch of the best `MOST_CURVES` variants of `order`."""
    shown = order[:MOST_CURVES]
    rows = [{"variant": v, "seed": seed, **row} for (v, seed), s in summaries.items() if v in shown
            for row in s["history"]]
    frame = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    sns.lineplot(frame, x="epoch", y="train_loss", hue="variant", hue_order=shown, errorbar="sd", marker="o",
                 ax=axes[0])
    sns.lineplot(frame, x="epoch", y="val_miou", hue="variant", hue_order=shown, errorbar="sd", marker="o",
                 ax=axes[1])
    axes[0].set(ylabel="training loss (epoch mean)")
    axes[1].set(ylabel="selection mIoU (whole split)", ylim=(0, 1))
    if len(order) > len(shown):
        fig.suptitle(f"the {len(shown)} best of {len(order)} variants", fontsize=9)
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


def plot_samples(sample_dirs: dict[str, Path], labels: list[dict], classes: list[str], note: str, path: Path,
                 per_variant: int = 4) -> None:
    """Rows: sample images; columns: the best `MOST_CURVES` variants (`sample_dirs` best first),
    each cell image | ground truth | prediction, with the colour of each of `classes` (those the
    per-class plot shows, see `shown_classes`; `note` says which) in a legend. `labels` is the
    label map, whose colours the panels use."""
    shown = dict(list(sample_dirs.items())[:MOST_CURVES])
    names = sorted({p.name for d in shown.values() for p in d.glob("*.png")})[:per_variant]
    fig, axes = plt.subplots(max(1, len(names)), len(shown), squeeze=False,
                             figsize=(4.2 * len(shown), 1.6 * max(1, len(names))))
    for col, (variant, directory) in enumerate(shown.items()):
        axes[0, col].set_title(f"{variant}\nimage | ground truth | prediction", fontsize=8)
        for row, name in enumerate(names):
            if (directory / name).exists():
                axes[row, col].imshow(Image.open(directory / name))
            axes[row, col].axis("off")
    colours = palette(labels).colours
    label_of = {row["name"]: int(row["label"]) for row in labels}
    handles = [Patch(facecolor=colours[label_of[name]] / 255, edgecolor="grey", label=name) for name in classes]
    shown_note = f"the {len(shown)} best of {len(sample_dirs)} variants; " if len(sample_dirs) > len(shown) else ""
    fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 8), fontsize=7, frameon=False,
               bbox_to_anchor=(0.5, 0.0), title=f"{shown_note}colour of each class{note}", title_fontsize=8)
    _save(fig, path)
