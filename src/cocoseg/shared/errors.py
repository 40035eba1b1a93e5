"""The two ways a command ends early on purpose: an input the user must fix (one line, exit 1) and
a stop a scheduler asked for (checkpoint saved, exit RESUBMIT_EXIT so the job is run again)."""

from __future__ import annotations


class InputError(Exception):
    """An input the user must fix; the CLI prints it as one line and exits non-zero."""


class StopRequested(Exception):
    """A signal stopped training after its checkpoint was saved; the CLI exits with RESUBMIT_EXIT."""


RESUBMIT_EXIT = 75  # EX_TEMPFAIL: stopped with a checkpoint, to be run again


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (or its type), short enough for a one-line error."""
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:limit]
