"""The images where the report's best two variants disagree most, each shown with the ground
truth and both variants' predictions: what a reader looks at before trusting a lead.

The two variants come from the report's own ranking (`metrics.csv`, best first), the images
from their per-image counts (`per_image.largest_disagreements`, the same images as the
report's table), the predictions from each variant's first seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cocoseg.evaluation.metrics_file import METRICS_FILE, read_metrics
from cocoseg.evaluation.per_image import FILE_NAME, largest_disagreements, read_per_image
from cocoseg.evaluation.predictor import inference_device, scored_predictor
from cocoseg.masks.split_folder import read_manifest
from cocoseg.report.plot_names import SHOWN_IMAGES
from cocoseg.shared.colours import Palette, palette
from cocoseg.shared.files import atomic_path, read_csv
from cocoseg.shared.run_folders import run_path
from cocoseg.training.samples import load_sample

ROW_HEIGHT = 180


def best_two(metrics_csv: Path) -> tuple[str, str, str] | None:
    """(split, best, runner-up) of the first split in the report's ranked metrics.csv."""
    rows = read_csv(metrics_csv)
    first = [row["variant"] for row in rows if row["split"] == rows[0]["split"]] if rows else []
    return (rows[0]["split"], first[0], first[1]) if len(first) >= 2 else None


def _text_image(lines: list[str], width: int) -> Image.Image:
    font = ImageFont.load_default(size=14)
    canvas = Image.new("RGB", (width, 8 + 20 * len(lines)), "white")
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((6, 4 + 20 * i), line, fill="black", font=font)
    return canvas


def _row(image: np.ndarray, truth: np.ndarray, predictions: list[np.ndarray], colours: Palette) -> Image.Image:
    tiles = [image, colours.overlay(image, truth), *(colours.overlay(image, p) for p in predictions)]
    strip = Image.fromarray(np.concatenate(tiles, axis=1))
    return strip.resize((max(1, round(strip.width * ROW_HEIGHT / strip.height)), ROW_HEIGHT))


def _stack(parts: list[Image.Image]) -> Image.Image:
    canvas = Image.new("RGB", (max(p.width for p in parts), sum(p.height for p in parts)), "white")
    top = 0
    for part in parts:
        canvas.paste(part, (0, top))
        top += part.height
    return canvas


def draw_top_two(results: Path, metrics_csv: Path, masks_root: Path, seeds: list[str], output: Path,
                 cpus: int = 1, shown: int = SHOWN_IMAGES) -> list[str]:
    """Write the panel to `output`; returns the file names shown (none with fewer than two variants)."""
    chosen = best_two(metrics_csv)
    if chosen is None:
        with atomic_path(output) as tmp:
            _text_image(["One variant: no lead to look into."], 480).save(tmp, format="PNG")
        return []
    split, best, runner_up = chosen
    counts = {v: [read_per_image(run_path(results, "eval", v, s) / split / FILE_NAME) for s in seeds]
              for v in (best, runner_up)}
    images = largest_disagreements(counts[best], counts[runner_up], shown)
    device = inference_device(cpus)[0]
    model_of = {v: run_path(results, "models", v, seeds[0]) / "model.pt" for v in (best, runner_up)}
    scored = {v: read_metrics(run_path(results, "eval", v, seeds[0]) / split / METRICS_FILE).get("inference")
              for v in (best, runner_up)}
    predictors = [scored_predictor(model_of[v], device, scored[v]) for v in (best, runner_up)]
    split_dir = Path(masks_root) / split
    rows = {row["file_name"]: row for row in read_manifest(split_dir)}
    colours = palette(predictors[0].labels)
    parts = [_text_image([f"{split}: image | ground truth | {best} | {runner_up} (predictions of seed {seeds[0]}; "
                          f"each image's mIoU is the mean over {len(seeds)} seed(s))"], 1200)]
    for name, best_miou, runner_miou in images:
        image, truth = load_sample(split_dir, rows[name])
        parts.append(_text_image([f"{name}: mIoU {best_miou:.3f} ({best}) against {runner_miou:.3f} ({runner_up})"],
                                 1200))
        parts.append(_row(image, truth, [p(image) for p in predictors], colours))
    with atomic_path(output) as tmp:
        _stack(parts).save(tmp, format="PNG")
    return [name for name, _, _ in images]
