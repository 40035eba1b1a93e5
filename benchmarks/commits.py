"""This repository's code as it was at an earlier commit, for benchmarks that compare against it
in the same invocation (`--against COMMIT`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def source_at(commit: str, root: Path) -> Path:
    """This repository's src/ as it was at `commit`, extracted under `root`."""
    target = root / f"src-{commit}"
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "src"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "src"
