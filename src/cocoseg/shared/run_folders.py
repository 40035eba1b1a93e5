"""Where a run's files live in the workflow's results folder."""

from __future__ import annotations

from pathlib import Path


def run_path(results: Path, stage: str, variant: str, seed: str | int) -> Path:
    """A run's folder for a stage (`models`, `eval`) in the workflow's results folder."""
    return Path(results) / stage / variant / f"seed-{seed}"
