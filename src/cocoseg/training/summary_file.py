"""`summary.json` beside `model.pt`: what a finished run records (its settings, epochs, timings,
hardware, cost and history). Written by training; read by training (a finished run restored),
evaluation (the training time) and the report.

Torch-free: the report's environment reads it.
"""

from __future__ import annotations

from pathlib import Path

from cocoseg.shared.files import read_json, write_json

SUMMARY_FILE = "summary.json"
KEYS = ("config", "epochs", "train_seconds", "history")  # always written; what later stages read


def write_summary(output_dir: Path, summary: dict) -> None:
    write_json(Path(output_dir) / SUMMARY_FILE, summary)


def read_summary(path: Path) -> dict:
    """A run's summary, or one line naming the file and what is wrong with it."""
    return read_json(path, "a summary.json of `cocoseg train`", KEYS)
