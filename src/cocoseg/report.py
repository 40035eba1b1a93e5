"""Comparison tables, plots and REPORT.md from a workflow's results folder.

Everything here reads files the earlier stages wrote; no number is typed in by hand. Each
variant is trained once per seed: tables give the mean and the standard deviation over seeds,
and the summary says whether the best variant's lead is larger than seed noise. The narrative
lives in the Jinja template (`workflow/report/REPORT.md.jinja`).
"""

from __future__ import annotations

import math
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
from .report_plots import PLOTS
from .splitfolder import OK, read_manifest_rows

METRICS = ["miou", "mdice", "pixel_accuracy", "last_epoch_miou", "inference_images_per_s",
           "inference_peak_memory_mb", "train_seconds", "train_peak_memory_mb", "device_hours", "epoch"]
NOISE_RULE = "the lead exceeds twice the standard error of the difference of the means, sqrt(s1²/n1 + s2²/n2)"
TOP_CONFUSIONS = 5
MANY_CLASSES = 30  # above this, per-class plots show the most and least frequent classes only


def run_path(results: Path, stage: str, variant: str, seed: str) -> Path:
    return Path(results) / stage / variant / f"seed-{seed}"


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
            "epochs": s["epochs"], "epoch": m["epoch"], "last_epoch_miou": m["last_epoch_miou"],
            "selected_on": selection["split"] + (" (holdout)" if selection["subset"] == "holdout" else ""),
            "selection_images": selection["images"],
            "same_images": selection["subset"] == "all" and selection["split"] == split,
            "train_seconds": s["train_seconds"], "device_hours": s["device_hours"],
            "device_hours_unit": s["device_hours_unit"], "device": training_device(s), "precision": s["precision"],
            "train_peak_memory_mb": s["peak_memory_mb"],
            "inference_images_per_s": m["inference_images_per_s"],
            "inference_peak_memory_mb": m["inference_peak_memory_mb"],
            "miou": m["miou"], "mdice": m["mdice"], "pixel_accuracy": m["pixel_accuracy"],
            "checkpoint": str(run_path(results, "models", variant, seed) / "model.pt"),
        })
    return pd.DataFrame(rows)


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds (std NaN with one seed), one row per variant and split."""
    keys = ["variant", "split"]
    fixed = ["architecture", "encoder", "image_size", "params_m", "epochs", "selected_on", "device_hours_unit",
             "device", "precision"]
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
    return table


def pareto_front(speed: pd.Series, accuracy: pd.Series) -> pd.Series:
    """True where no other point is at least as fast and as accurate, and strictly better in one."""
    s, a = speed.to_numpy(), accuracy.to_numpy()
    dominated = [bool(((s >= s[i]) & (a >= a[i]) & ((s > s[i]) | (a > a[i]))).any()) for i in range(len(s))]
    return pd.Series(np.logical_not(dominated), index=speed.index)


def verdict(part: pd.DataFrame) -> dict:
    """The best variant of one split and whether its lead over the runner-up is beyond seed noise."""
    ranked = part.sort_values("miou_mean", ascending=False)
    best = ranked.iloc[0]
    result = {"best": best, "runner_up": None, "lead": None, "standard_error": None, "beyond_noise": None}
    if len(ranked) < 2:
        return result
    second = ranked.iloc[1]
    result["runner_up"], result["lead"] = second, best["miou_mean"] - second["miou_mean"]
    if min(best["seeds"], second["seeds"]) >= 2:
        se = math.sqrt(best["miou_std"] ** 2 / best["seeds"] + second["miou_std"] ** 2 / second["seeds"])
        result["standard_error"], result["beyond_noise"] = se, bool(result["lead"] > 2 * se)
    return result


def mean_std(mean: float, std: float, digits: int = 3) -> str:
    return f"{mean:.{digits}f}" if pd.isna(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def zoo_table(table: pd.DataFrame) -> pd.DataFrame:
    """The metrics in a model zoo's columns (MMSegmentation's README style), mean ± std over seeds."""
    def pm(metric: str, digits: int = 3):
        return [mean_std(m, s, digits) for m, s in zip(table[f"{metric}_mean"], table[f"{metric}_std"])]

    return pd.DataFrame({
        "Method": table["architecture"], "Backbone": table["encoder"], "Crop size": table["image_size"],
        "Schedule": table["epochs"].map(lambda e: f"{e} epochs"), "Seeds": table["seeds"],
        "Params (M)": table["params_m"].map("{:.1f}".format),
        "Train mem (MiB)": table["train_peak_memory_mb_mean"].map("{:.0f}".format),
        "Train time (min)": [mean_std(m / 60, s / 60, 1) for m, s in
                             zip(table["train_seconds_mean"], table["train_seconds_std"])],
        "Cost": [f"{h:.3f} {unit}" for h, unit in zip(table["device_hours_mean"], table["device_hours_unit"])],
        "mIoU per device-hour": table["miou_per_device_hour"].map("{:.1f}".format),
        "Inf (img/s)": pm("inference_images_per_s", 1),
        "Selected on": table["selected_on"], "Split": table["split"], "mIoU": pm("miou"),
        "mDice": pm("mdice"), "aAcc": pm("pixel_accuracy"), "mIoU last epoch": pm("last_epoch_miou"),
        "Config": table["variant"],
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
        summary = read_json(split_dir / "summary.json")
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


def shown_classes(frequency: pd.Series, limit: int = MANY_CLASSES) -> tuple[list[str], str]:
    """All classes by frequency, or the most and least frequent halves of `limit` when there are more."""
    ordered = list(frequency.sort_values(ascending=False).index)
    if len(ordered) <= limit:
        return ordered, ""
    half = limit // 2
    return ordered[:half] + ordered[-half:], f" ({half} most and {half} least frequent of {len(ordered)} classes)"


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


def machine_description() -> str:
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def _write_table(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def build(results: Path, variants: list[str], seeds: list[str], eval_splits: list[str], data_splits: list[str],
          out_dir: Path, report_md: Path, template: Path, configs: list[str]) -> None:
    """Write tables and plots under `out_dir` and render `report_md` from `template`."""
    results, out_dir = Path(results), Path(out_dir)
    seeds = [str(seed) for seed in seeds]
    summaries = {(v, seed): read_json(run_path(results, "models", v, seed) / "summary.json")
                 for v in variants for seed in seeds}
    runs_of = [(v, seed, s) for v in variants for seed in seeds for s in eval_splits]

    def eval_file(run: tuple[str, str, str], name: str) -> Path:
        variant, seed, split = run
        return run_path(results, "eval", variant, seed) / split / name

    metrics = {run: read_json(eval_file(run, "metrics.json")) for run in runs_of}
    per_class = {run: pd.DataFrame(read_csv(eval_file(run, "per_class.csv")))
                 .assign(iou=lambda f: pd.to_numeric(f["iou"])) for run in runs_of}
    confusions = {run: pd.DataFrame(read_csv(eval_file(run, "confusion.csv")))
                  .drop(columns="label").to_numpy(dtype=np.int64) for run in runs_of}

    runs = runs_table(summaries, metrics, results)
    table = aggregate(runs)
    per_class_long, classes = per_class_tables(per_class, single_split=len(eval_splits) == 1)
    datasets, shares = dataset_table({s: results / "masks" / s for s in data_splits})
    names = list(dict.fromkeys(per_class_long["name"]))
    summed = {(v, s): sum(confusions[v, seed, s] for seed in seeds) for v in variants for s in eval_splits}
    confused = pd.concat([top_confusions(matrix, names).assign(variant=v, split=s)
                          for (v, s), matrix in summed.items()], ignore_index=True)
    confused = confused[["variant", "split", "label", "predicted", "share", "pixels"]]

    tables = {"metrics.csv": table, "metrics_per_seed.csv": runs,
              "per_class_iou.csv": classes.rename_axis("class").reset_index(),
              "per_class_iou_per_seed.csv": per_class_long, "top_confusions.csv": confused,
              "dataset_stats.csv": datasets, "class_pixel_share.csv": shares.rename_axis("class").reset_index()}
    for name, frame in tables.items():
        _write_table(frame, out_dir / name)
    zoo = markdown(zoo_table(table))
    with atomic_path(out_dir / "metrics.md") as tmp:
        tmp.write_text(zoo + "\n", encoding="utf-8")

    verdicts = {split: verdict(part) for split, part in table.groupby("split", sort=False)}
    best = verdicts[eval_splits[0]]["best"]
    frequency = shares[eval_splits[0]] if eval_splits[0] in shares else shares.iloc[:, 0]
    shown, note = shown_classes(frequency.reindex(classes.index).fillna(0))
    plots = out_dir / "plots"
    plot_metrics_bars(runs, plots / "metrics_bars.png")
    plot_speed_accuracy(table, plots / "speed_accuracy.png")
    plot_cost_accuracy(table, plots / "cost_accuracy.png")
    plot_per_class_iou(classes, shown, note, plots / "per_class_iou.png")
    plot_training_curves(summaries, plots / "training_curves.png")
    plot_class_frequency(shares, plots / "class_frequency.png")
    plot_confusion(summed[best["variant"], best["split"]], names,
                   f"{best['variant']} on {best['split']}, all seeds", plots / "confusion_best.png")
    plot_samples({v: run_path(results, "eval", v, seeds[0]) / eval_splits[0] / "samples" for v in variants},
                 plots / "samples.png")

    class_table = classes.loc[shown].round(3).astype(object).where(classes.loc[shown].notna(), "-")
    relative = Path(os.path.relpath(out_dir, Path(report_md).parent))
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(template).parent),
                                     undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    text = environment.get_template(Path(template).name).render(
        configs=configs, machine=machine_description(), zoo=zoo, table=table, verdicts=verdicts,
        noise_rule=NOISE_RULE, summaries={v: summaries[v, seeds[0]] for v in variants},
        variants=variants, eval_splits=eval_splits, mean_std=mean_std,
        same_images=table[table["same_images"]], datasets=markdown(datasets),
        class_table=markdown(class_table.rename_axis("class").reset_index()), class_note=note,
        confusions=markdown(confused.assign(share=confused["share"].map("{:.3f}".format))),
        plots={name: (relative / "plots" / f"{name}.png").as_posix() for name in PLOTS},
        tables={name: (relative / name).as_posix() for name in tables},
        pareto=list(table.loc[table["pareto"], "variant"]),
    )
    with atomic_path(report_md) as tmp:
        tmp.write_text(text, encoding="utf-8")
