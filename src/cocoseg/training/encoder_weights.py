"""Encoder-weights files: a state dict of the encoder's tensors, checked before it is used.

Compute nodes are often offline, so the workflow fetches named weights on the submitting
machine (`cocoseg weights`, see `network.save_encoder_weights`) into a file that training jobs
load without a network. A file from elsewhere is read with `weights_only=True`: it cannot run
code when loaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cocoseg.shared.errors import InputError, first_line
from cocoseg.shared.torch_loading import read_tensors


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict of tensors from `path`; InputError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: encoder weights file not found")
    try:
        state = read_tensors(path)
    except Exception as e:  # not a torch file, or a pickle carrying objects
        raise InputError(f"{path}: not a state dict saved by torch.save ({first_line(e)})") from None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: not a state dict of tensors (save one with torch.save(model.encoder.state_dict()))")
    return state


def load_encoder_weights(module: nn.Module, path: Path, encoder: str) -> None:
    """Load a file's tensors into an encoder module, every key and shape matching."""
    try:
        module.load_state_dict(read_state_dict(path))
    except RuntimeError as e:
        raise InputError(f"{path}: does not fit the {encoder} encoder ({first_line(e)})") from None
