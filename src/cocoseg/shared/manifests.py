"""Manifests: one row per input file, `ok` or `skipped` with the reason, as the mask stage and
prediction write them (each format names its own columns), and how their rows are counted."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from cocoseg.shared.files import write_csv

OK, SKIPPED = "ok", "skipped"


def write_manifest(path: Path, columns: Sequence[str], rows: list[dict]) -> None:
    write_csv(path, columns, [[row[c] for c in columns] for row in rows])


def status_counts(rows: list[dict]) -> dict:
    """Files, usable (`ok`) and skipped, as summaries report them."""
    ok = sum(row["status"] == OK for row in rows)
    return {"files": len(rows), "ok": ok, "skipped": len(rows) - ok}
