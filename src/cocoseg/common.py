"""What every stage shares: the error a user must fix, the stop a scheduler asked for, the label
values of a mask, and where a run's files live in the workflow's results folder."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """An input the user must fix; the CLI prints it as one line and exits non-zero."""


class StopRequested(Exception):
    """A signal stopped training after its checkpoint was saved; the CLI exits with RESUBMIT_EXIT."""


RESUBMIT_EXIT = 75  # EX_TEMPFAIL: stopped with a checkpoint, to be run again


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (or its type), short enough for a one-line error."""
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:limit]


BACKGROUND = 0
IGNORE = 255  # pixels no metric counts: crowd regions, padding, unknown categories
MAX_CLASSES = 254  # labels 1..254; 0 is background and 255 is "ignore"


def run_path(results: Path, stage: str, variant: str, seed: str | int) -> Path:
    """A run's folder for a stage (`models`, `eval`) in the workflow's results folder."""
    return Path(results) / stage / variant / f"seed-{seed}"
