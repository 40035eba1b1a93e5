"""The winner in a file a script can read (`best.json`): the report's best variant, the seed to
use, its model file, its scores with their intervals, and the command that predicts with it."""

from __future__ import annotations

import shlex
from pathlib import Path

import pandas as pd

from ..common import run_path


def _number(value) -> float | None:
    return None if pd.isna(value) else float(value)


def winner(table: pd.DataFrame, summaries: dict[tuple[str, str], dict], seeds: list[str], results: Path) -> dict:
    """The best variant on the ranking's split (`table` as `tables.ranked` orders it) and, of its
    seeds, the one whose chosen epoch scored highest on the selection images: the seed is chosen
    apart from the scored split, like the epoch."""
    best = table.iloc[0]
    best_seed_of = {variant: int(max(seeds, key=lambda s: summaries[variant, s]["best_val_miou"]))
                    for variant in dict.fromkeys(table["variant"])}
    seed = str(best_seed_of[best["variant"]])
    model = run_path(results, "models", best["variant"], seed) / "model.pt"
    return {
        "variant": best["variant"], "seed": int(seed), "split": best["split"], "ranked_by": "mIoU, mean over seeds",
        "seed_chosen_by": "the highest selection mIoU of the chosen epoch (summary.json best_val_miou), not the "
                          "scored split",
        "best_seed_of": best_seed_of, "results": Path(results).as_posix(), "model": model.as_posix(), "config": summaries[best["variant"], seed]["config"],
        "scores": {"miou": _number(best["miou_mean"]), "miou_std": _number(best["miou_std"]),
                   "miou_low": _number(best.get("miou_low")), "miou_high": _number(best.get("miou_high")),
                   "mdice": _number(best["mdice_mean"]), "pixel_accuracy": _number(best["pixel_accuracy_mean"]),
                   "interval": "95%, paired bootstrap over images and seeds"},
        "predict_command": shlex.join(["python", "-m", "cocoseg", "predict", "--model", model.as_posix(),
                                       "--images", "<folder of images>", "--output", "<output folder>"]),
    }
