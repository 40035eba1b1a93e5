"""Reading torch files that come from elsewhere: tensors and plain data, never code.

Imports nothing from the package, so every module that reads such a file can use it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch


def read_tensors(path: Path, device: str = "cpu"):
    """A torch file read with `weights_only=True`: tensors and plain data, never code.

    Raises whatever torch raises for a file that is not one (callers name the file); torch's
    warning about legacy pickles, printed before it refuses them, is silenced.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location=device, weights_only=True)
