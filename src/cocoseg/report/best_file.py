"""The winner file (`results/report/best.json`): written by the report, read by prediction and
export, which turn `best` into a variant, a seed and its model file when they run (the jobs
depend on best.json, so a new report means a new prediction).

Kept free of heavy imports: the Snakefile imports its names.
"""

from __future__ import annotations

from pathlib import Path

from cocoseg.shared.errors import InputError
from cocoseg.shared.files import read_json, write_json
from cocoseg.shared.run_folders import run_path

BEST_FILE = "best.json"
BEST = "best"  # the word a config or a command uses for "the report's choice"


def write_best(path: Path, best: dict) -> None:
    write_json(path, best)


def read_best(path: Path) -> dict:
    """The report's winner, or one line naming the file and what is wrong with it."""
    if not Path(path).exists():
        raise InputError(f"{path}: not found; the report writes it (snakemake ... report)")
    return read_json(path, "a winner file of this version",
                     ("variant", "best_seed_of", "results"))


def chosen_run(best: dict, variant: str, seed: str | int) -> tuple[str, int]:
    """The (variant, seed) a setting names: `best` for the report's variant, and for a variant's
    seed the one whose chosen epoch scored highest on the selection images."""
    name = best["variant"] if variant == BEST else variant
    if str(seed) != BEST:
        return name, int(seed)
    try:
        return name, int(best["best_seed_of"][name])
    except KeyError:
        raise InputError(f"best.json: {name!r} is not a variant the report compared "
                         f"({', '.join(best['best_seed_of'])})") from None



def chosen_model(best: dict, variant: str, seed: str | int) -> Path:
    """The model.pt of the run `chosen_run` names, in the results folder of the report."""
    name, number = chosen_run(best, variant, seed)
    return run_path(best["results"], "models", name, number) / "model.pt"
