"""What every stage shares: the error a user must fix, and the label values of a mask."""

from __future__ import annotations


class InputError(Exception):
    """An input the user must fix; the CLI prints it as one line and exits non-zero."""


BACKGROUND = 0
IGNORE = 255  # pixels no metric counts: crowd regions, padding, unknown categories
MAX_CLASSES = 254  # labels 1..254; 0 is background and 255 is "ignore"
