"""REPORT.md and the files beside it: reads what the earlier stages wrote, writes the tables and
plots under the report folder and renders the Jinja template (`workflow/report/REPORT.md.jinja`)."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from cocoseg.evaluation.metrics_file import (
    CONFUSION_FILE,
    METRICS_FILE,
    PER_CLASS_FILE,
    read_confusion,
    read_metrics,
    read_per_class,
)
from cocoseg.evaluation.per_image import FILE_NAME as PER_IMAGE_FILE
from cocoseg.evaluation.per_image import PerImageCounts, read_per_image
from cocoseg.report import phrases
from cocoseg.report.best_file import BEST_FILE, write_best
from cocoseg.report.bootstrap import LEVEL, RESAMPLES, SEED, paired_bootstrap
from cocoseg.report.images import disagreements, hardest_images
from cocoseg.report.plot_names import PLOTS, TOP_TWO_PLOT
from cocoseg.report.plots import (
    plot_class_frequency,
    plot_confusion,
    plot_cost_accuracy,
    plot_interactions,
    plot_main_effects,
    plot_metrics_bars,
    plot_per_class_iou,
    plot_samples,
    plot_speed_accuracy,
    plot_training_curves,
)
from cocoseg.report.statistics import (
    NOISE_RULE,
    TIMING_SPREAD,
    cost_steps,
    interactions,
    main_effects,
    ranked_settings,
    typical_seed_spread,
    unsteady_timings,
    verdict,
)
from cocoseg.report.tables import (
    aggregate,
    class_order,
    dataset_table,
    details_table,
    effects_table,
    main_table,
    markdown,
    mean_std,
    per_class_tables,
    ranked_variants,
    runs_table,
    shown_classes,
    top_confusions,
)
from cocoseg.report.winner import winner
from cocoseg.shared.files import atomic_path
from cocoseg.shared.labels import has_background
from cocoseg.shared.run_folders import run_path
from cocoseg.training.summary_file import SUMMARY_FILE, read_summary


def machine_description() -> str:
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def answer_in_words(table: pd.DataFrame, effects: pd.DataFrame) -> dict[str, dict]:
    """Per split: what each setting contributes, the settings closer than seed noise, the seeds'
    typical spread and what each step up in training cost buys (the summary's phrases)."""
    splits = list(dict.fromkeys(table["split"]))
    ranked = ranked_settings(effects)
    settings = {split: ranked[ranked["split"] == split] for split in splits}
    spread = {split: typical_seed_spread(table[table["split"] == split]) for split in splits}
    return {
        "contributions": {split: phrases.contributions(settings[split]) for split in splits},
        "within_spread": {split: phrases.within_spread(settings[split], spread[split]) for split in splits},
        "seed_spread": spread,
        "steps": {split: phrases.cost_steps(cost_steps(table[table["split"] == split])) for split in splits},
    }


def _write_table(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def read_counts(results: Path, variants: list[str], seeds: list[str], split: str
                ) -> dict[str, list[PerImageCounts] | None]:
    """Per variant, each seed's per-image counts on `split`; None where a run has none."""
    paths = {v: [run_path(results, "eval", v, seed) / split / PER_IMAGE_FILE for seed in seeds] for v in variants}
    return {v: [read_per_image(p) for p in files] if all(p.exists() for p in files) else None
            for v, files in paths.items()}


def with_intervals(table: pd.DataFrame, counts: dict[str, dict], resamples: int, seed: int) -> pd.DataFrame:
    """`table` with each variant's bootstrap interval columns (`bootstrap.paired_bootstrap`)."""
    best = {split: part.loc[part["miou_mean"].idxmax(), "variant"] for split, part in table.groupby("split")}
    intervals = pd.concat([paired_bootstrap(split, counts[split], resamples, seed, best[split]) for split in counts])
    intervals = intervals.drop(columns=["miou", "seeds", "diff_from_best"]).rename(
        columns={"images": "interval_images", "note": "interval_note"})
    table = table.merge(intervals, on=["split", "variant"], how="left")
    table["diff_from_best"] = table["miou_mean"] - table["split"].map(table.groupby("split")["miou_mean"].max())
    return table


@dataclass(frozen=True)
class Runs:
    """What the earlier stages wrote for every run (variant, seed, split)."""
    summaries: dict[tuple[str, str], dict]
    metrics: dict[tuple[str, str, str], dict]
    selection: dict[tuple[str, str], dict]  # each run scored on its selection images, where the workflow did so
    per_class: dict[tuple[str, str, str], pd.DataFrame]
    confusions: dict[tuple[str, str, str], np.ndarray]
    counts: dict[str, dict[str, list[PerImageCounts] | None]]  # split -> variant -> per seed


def read_runs(results: Path, variants: list[str], seeds: list[str], eval_splits: list[str]) -> Runs:
    def eval_file(run: tuple[str, str, str], name: str) -> Path:
        variant, seed, split = run
        return run_path(results, "eval", variant, seed) / split / name

    runs = [(v, seed, s) for v in variants for seed in seeds for s in eval_splits]
    return Runs(
        summaries={(v, seed): read_summary(run_path(results, "models", v, seed) / SUMMARY_FILE)
                   for v in variants for seed in seeds},
        metrics={run: read_metrics(eval_file(run, METRICS_FILE)) for run in runs},
        selection={(v, seed): read_metrics(path) for v in variants for seed in seeds
                   if (path := run_path(results, "selection", v, seed) / METRICS_FILE).is_file()},
        per_class={run: pd.DataFrame(read_per_class(eval_file(run, PER_CLASS_FILE)))
                   .assign(iou=lambda f: pd.to_numeric(f["iou"])) for run in runs},
        confusions={run: read_confusion(eval_file(run, CONFUSION_FILE)) for run in runs},
        counts={split: read_counts(results, variants, seeds, split) for split in eval_splits},
    )


def image_tables(verdicts: dict[str, dict], counts: dict[str, list[PerImageCounts] | None]
                 ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Each variant's hardest images, and where the best two disagree (None without both's counts)."""
    usable = {v: c for v, c in counts.items() if c}
    best, runner_up = verdicts["best"], verdicts["runner_up"]
    pair = None if runner_up is None else (best["variant"], runner_up["variant"])
    differing = disagreements(*pair, usable) if pair and set(pair) <= set(usable) else None
    return hardest_images(usable), differing


@dataclass(frozen=True)
class Request:
    """What a report compares and where it writes."""

    results: Path
    variants: list[str]
    seeds: list[str]
    eval_splits: list[str]
    data_splits: list[str]
    out_dir: Path


@dataclass(frozen=True)
class Analysis:
    """The report's tables, computed once from the runs and shared by the files, plots and text."""

    per_seed: pd.DataFrame
    table: pd.DataFrame  # per variant and split: means, spreads, intervals, ranks
    ranking: list[str]
    per_class_long: pd.DataFrame
    classes: pd.DataFrame  # IoU per class (rows) and variant
    datasets: pd.DataFrame
    shares: pd.DataFrame  # labelled-pixel share per class and split
    names: list[str]  # class names in label order
    summed: dict[tuple[str, str], np.ndarray]  # confusion per variant and split, over seeds
    confused: pd.DataFrame
    effects: pd.DataFrame
    pairs: pd.DataFrame
    verdicts: dict[str, dict]
    hardest: pd.DataFrame
    differing: pd.DataFrame | None
    best_run: dict


def build(results: Path, variants: list[str], seeds: list[str], eval_splits: list[str], data_splits: list[str],
          out_dir: Path, report_md: Path, template: Path, configs: list[str], resamples: int = RESAMPLES,
          bootstrap_seed: int = SEED) -> None:
    """Write tables and plots under `out_dir` and render `report_md` from `template`."""
    request = Request(Path(results), variants, [str(seed) for seed in seeds], eval_splits, data_splits, Path(out_dir))
    runs = read_runs(request.results, variants, request.seeds, eval_splits)
    analysis = analyse(request, runs, resamples, bootstrap_seed)
    tables = write_tables(request, analysis)
    shown, note = draw_plots(request, runs, analysis)
    write_document(request, runs, analysis, tables, shown, note, report_md, template, configs, resamples,
                   bootstrap_seed)


def analyse(request: Request, runs: Runs, resamples: int, bootstrap_seed: int) -> Analysis:
    """Every table the report shows, from the runs' files."""
    variants, seeds, eval_splits = request.variants, request.seeds, request.eval_splits
    per_seed = runs_table(runs.summaries, runs.metrics, request.results)
    table = with_intervals(aggregate(per_seed), runs.counts, resamples, bootstrap_seed)
    ranking = ranked_variants(table)
    per_class_long, classes = per_class_tables({run: runs.per_class[run] for run in sorted(
        runs.per_class, key=lambda run: ranking.index(run[0]))}, single_split=len(eval_splits) == 1)
    datasets, shares = dataset_table({s: request.results / "masks" / s for s in request.data_splits})
    names = list(dict.fromkeys(per_class_long["name"]))
    summed = {(v, s): sum(runs.confusions[v, seed, s] for seed in seeds) for v in variants for s in eval_splits}
    confused = pd.concat([top_confusions(matrix, names).assign(variant=v, split=s)
                          for (v, s), matrix in summed.items()], ignore_index=True)
    confused = confused[["variant", "split", "label", "predicted", "share", "pixels"]]
    configs_of = {v: runs.summaries[v, seeds[0]]["config"] for v in variants}
    effects, pairs = main_effects(table, configs_of), interactions(table, configs_of)
    verdicts = {split: verdict(part) for split, part in table.groupby("split", sort=False)}
    hardest, differing = image_tables(verdicts[eval_splits[0]], runs.counts[eval_splits[0]])
    best_run = winner(table, runs.summaries, runs.metrics, runs.selection, seeds, request.results)
    return Analysis(per_seed, table, ranking, per_class_long, classes, datasets, shares, names, summed, confused,
                    effects, pairs, verdicts, hardest, differing, best_run)


def write_tables(request: Request, a: Analysis) -> dict[str, pd.DataFrame]:
    """The CSV tables, best.json and metrics.md under the report folder; returns the tables by file name."""
    tables = {"metrics.csv": a.table, "metrics_per_seed.csv": a.per_seed, "main_effects.csv": a.effects,
              "interactions.csv": a.pairs, "hardest_images.csv": a.hardest,
              "top_two_disagreements.csv": a.differing if a.differing is not None else pd.DataFrame(
                  columns=["image", "difference"]),
              "per_class_iou.csv": a.classes.rename_axis("class").reset_index(),
              "per_class_iou_per_seed.csv": a.per_class_long, "top_confusions.csv": a.confused,
              "dataset_stats.csv": a.datasets, "class_pixel_share.csv": a.shares.rename_axis("class").reset_index()}
    for name, frame in tables.items():
        _write_table(frame, request.out_dir / name)
    write_best(request.out_dir / BEST_FILE, a.best_run)
    with atomic_path(request.out_dir / "metrics.md") as tmp:
        tmp.write_text(markdown(main_table(a.table)) + "\n\n" + markdown(details_table(a.table)) + "\n",
                       encoding="utf-8")
    return tables


def label_map_of(runs: Runs) -> list[dict]:
    """The runs' label map (label, category_id, name), as their per-class tables give it."""
    return next(iter(runs.per_class.values()))[["label", "category_id", "name"]].to_dict("records")


def draw_plots(request: Request, runs: Runs, a: Analysis) -> tuple[list[str], str]:
    """Every plot of `PLOTS`; returns the classes the per-class plot and table show, and the note
    on those left out."""
    first_split = request.eval_splits[0]
    best = a.verdicts[first_split]["best"]
    frequency = a.shares[first_split] if first_split in a.shares else a.shares.iloc[:, 0]
    frequency = frequency.reindex(a.classes.index).fillna(0)
    order = class_order(frequency)
    shown, note = shown_classes(frequency)
    plots = request.out_dir / "plots"
    plot_metrics_bars(a.table, plots / "metrics_bars.png")
    plot_speed_accuracy(a.table, plots / "speed_accuracy.png")
    plot_cost_accuracy(a.table, plots / "cost_accuracy.png")
    plot_main_effects(a.effects, plots / "main_effects.png")
    plot_interactions(a.pairs, plots / "interactions.png")
    plot_per_class_iou(a.classes, shown, note, plots / "per_class_iou.png")
    plot_training_curves(runs.summaries, a.ranking, plots / "training_curves.png")
    plot_class_frequency(a.shares, order, plots / "class_frequency.png")
    plot_confusion(a.summed[best["variant"], best["split"]], a.names, order,
                   f"{best['variant']} on {best['split']}, all seeds", plots / "confusion_best.png")
    plot_samples({v: run_path(request.results, "eval", v, request.seeds[0]) / first_split / "samples"
                  for v in a.ranking}, label_map_of(runs), shown, note, plots / "samples.png")
    return shown, note


def write_document(request: Request, runs: Runs, a: Analysis, tables: dict[str, pd.DataFrame], shown: list[str],
                   note: str, report_md: Path, template: Path, configs: list[str], resamples: int,
                   bootstrap_seed: int) -> None:
    """REPORT.md from the Jinja template, linking the tables and plots by paths relative to it."""
    table, variants = a.table, request.variants
    class_table = a.classes.loc[shown].round(3).astype(object).where(a.classes.loc[shown].notna(), "-")
    relative = Path(os.path.relpath(request.out_dir, Path(report_md).parent))
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(template).parent),
                                     undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    text = environment.get_template(Path(template).name).render(
        configs=configs, machine=machine_description(), main=markdown(main_table(table)),
        details=markdown(details_table(table)), table=table, verdicts=a.verdicts,
        noise_rule=NOISE_RULE, summaries={v: runs.summaries[v, request.seeds[0]] for v in variants},
        variants=variants, eval_splits=request.eval_splits, mean_std=mean_std,
        same_images=table[table["same_images"]], datasets=markdown(a.datasets),
        class_table=markdown(class_table.rename_axis("class").reset_index()), class_note=note,
        class_count=len(a.names), background=has_background(label_map_of(runs)),
        confusions=markdown(a.confused.assign(share=a.confused["share"].map("{:.3f}".format))),
        plots={name: (relative / "plots" / f"{name}.png").as_posix() for name in PLOTS},
        tables={name: (relative / name).as_posix() for name in tables},
        top_two_plot=(relative / "plots" / TOP_TWO_PLOT).as_posix(),
        best_run=a.best_run, best_file=(relative / BEST_FILE).as_posix(),
        pareto=list(table.loc[table["pareto"], "variant"]),
        unsteady=unsteady_timings(table), timing_spread=TIMING_SPREAD,
        effects=markdown(effects_table(a.effects)) if len(a.effects) else "",
        **answer_in_words(table, a.effects),
        level=LEVEL, resamples=resamples, bootstrap_seed=bootstrap_seed,
        differing=None if a.differing is None else markdown(a.differing.set_index("image").map("{:.3f}".format)
                                                             .reset_index()),
    )
    with atomic_path(report_md) as tmp:
        tmp.write_text(text, encoding="utf-8")
