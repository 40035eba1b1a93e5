"""The winner in a file a script can read (`best.json`): the variant and seed chosen on the
selection images, its model file, its scores on the ranking split with their intervals, how it
was scored, and the command that predicts with it."""

from __future__ import annotations

import shlex
from pathlib import Path

import pandas as pd

from cocoseg.shared.run_folders import run_path


def _number(value) -> float | None:
    return None if pd.isna(value) else float(value)


def winner(table: pd.DataFrame, summaries: dict[tuple[str, str], dict], metrics: dict[tuple[str, str, str], dict],
           selection: dict[tuple[str, str], dict], seeds: list[str], results: Path) -> dict:
    """The winner, chosen apart from the score it reports: the variant with the highest mean mIoU
    over seeds on the selection images (`selection`: each run's metrics.json on the images that
    chose its epoch, scored with evaluation's inference) and, of its seeds, the one scoring highest
    there; its scores are the ranking split's (`table` as `tables.ranked` orders it), which chose
    nothing. Without selection scores for every run, the ranking split chooses (and the file says
    so: that figure is then biased upwards). `inference` is how the run was scored (metrics.json),
    which prediction then follows."""
    split = table.iloc[0]["split"]
    rows = table[table["split"] == split].set_index("variant")
    chosen_on, best_seed_of = _choice(rows, summaries, selection, seeds)
    variant = chosen_on.pop("variant")
    best, seed = rows.loc[variant], str(best_seed_of[variant])
    model = run_path(results, "models", variant, seed) / "model.pt"
    scored = metrics[variant, seed, split]
    leader = rows.index[0]
    return {
        "variant": variant, "seed": int(seed), "split": split, "chosen_on": chosen_on,
        "leader_on_split": None if leader == variant else {"variant": leader, "miou": _number(rows.iloc[0]["miou_mean"])},
        "inference": scored.get("inference"), "best_seed_of": best_seed_of, "results": Path(results).as_posix(),
        "model": model.as_posix(), "config": summaries[variant, seed]["config"],
        "scores": {"miou": _number(best["miou_mean"]), "miou_std": _number(best["miou_std"]),
                   "miou_low": _number(best.get("miou_low")), "miou_high": _number(best.get("miou_high")),
                   "mdice": _number(best["mdice_mean"]), "pixel_accuracy": _number(best["pixel_accuracy_mean"]),
                   "interval": "95%, paired bootstrap over images and seeds"},
        "predict_command": shlex.join(["python", "-m", "cocoseg", "predict", "--model", model.as_posix(),
                                       *inference_flags(scored.get("inference")),
                                       "--images", "<folder of images>", "--output", "<output folder>"]),
    }


def _choice(rows: pd.DataFrame, summaries: dict[tuple[str, str], dict], selection: dict[tuple[str, str], dict],
            seeds: list[str]) -> tuple[dict, dict[str, int]]:
    """What chose the winner (with its name under `variant`) and each variant's best seed."""
    variants = list(rows.index)
    if all((v, s) in selection for v in variants for s in seeds):
        mean = {v: sum(selection[v, s]["miou"] for s in seeds) / len(seeds) for v in variants}
        best_seed_of = {v: int(max(seeds, key=lambda s: selection[v, s]["miou"])) for v in variants}
        variant = max(variants, key=lambda v: mean[v])
        first = selection[variant, seeds[0]]
        return {"variant": variant, "split": first["split"], "subset": first.get("subset", "all"),
                "images": first["images"], "miou": mean[variant],
                "by": "mIoU on the selection images, mean over seeds; the seed: the highest there"}, best_seed_of
    best_seed_of = {v: int(max(seeds, key=lambda s: summaries[v, s]["best_val_miou"])) for v in variants}
    return {"variant": variants[0], "split": rows.iloc[0]["split"], "subset": "all", "images": None, "miou": None,
            "by": "mIoU on the scored split (no selection scores), which biases its figure upwards"}, best_seed_of


def inference_flags(inference: dict | None) -> list[str]:
    """`cocoseg predict` flags that infer as the run was scored."""
    if not inference:
        return []
    stride = ["--stride", ",".join(map(str, inference["stride"]))] if inference.get("stride") else []
    return ["--mode", inference["mode"], *stride, *(["--tta", *inference["tta"]] if inference.get("tta") else [])]
