"""`model.pt`: the one file format a trained variant is handed on in (training writes it, evaluation
and prediction read it).

Only tensors and plain data, so it loads with `weights_only=True`: a file from elsewhere cannot
run code when loaded.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .common import InputError, first_line
from .files import atomic_path
from .network import build_model
from .torchfile import read_tensors
from .variants import Variant


def save_model(path: Path, variant: Variant, labels: list[dict], state: dict, epoch: int | None,
               last_state: dict, last_epoch: int) -> None:
    """The chosen epoch's weights and the last epoch's, with the variant's settings and label map."""
    with atomic_path(path) as tmp:
        torch.save({"variant": variant.to_dict(), "labels": labels, "state_dict": state, "epoch": epoch,
                    "last_state_dict": last_state, "last_epoch": last_epoch}, tmp)


def load_trained(path: Path, device: str = "cpu", epoch: str = "chosen"
                 ) -> tuple[torch.nn.Module, Variant, list[dict], int | None]:
    """A `model.pt` written by `train`, ready for inference: the chosen epoch's weights, or the last's.

    Read with `weights_only=True`: a file from elsewhere cannot run code when loaded.
    """
    try:
        saved = read_tensors(path, device)
        variant = Variant(**saved["variant"])
        state = saved["last_state_dict"] if epoch == "last" else saved["state_dict"]
        model = build_model(variant.architecture, variant.encoder, None, len(saved["labels"]))
        model.load_state_dict(state)
    except FileNotFoundError:
        raise InputError(f"{path}: model file not found") from None
    except Exception as e:  # not a zip or pickle, a pickle carrying objects, other keys or shapes
        raise InputError(f"{path}: not a model.pt written by `cocoseg train` ({first_line(e)})") from None
    return model.to(device).eval(), variant, saved["labels"], saved.get("last_epoch" if epoch == "last" else "epoch")
