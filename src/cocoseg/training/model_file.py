"""`model.pt`: the one file format a trained variant is handed on in (training writes it, evaluation
and prediction read it).

Only tensors and plain data, so it loads with `weights_only=True`: a file from elsewhere cannot
run code when loaded.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from cocoseg.shared.errors import InputError, first_line
from cocoseg.shared.files import atomic_path
from cocoseg.shared.torch_loading import read_tensors
from cocoseg.training.network import build_model
from cocoseg.training.variants import Variant


def save_model(path: Path, variant: Variant, labels: list[dict], state: dict, epoch: int | None,
               last_state: dict, last_epoch: int) -> None:
    """The chosen epoch's weights and the last epoch's, with the variant's settings and label map."""
    with atomic_path(path) as tmp:
        torch.save({"variant": variant.to_dict(), "labels": labels, "state_dict": state, "epoch": epoch,
                    "last_state_dict": last_state, "last_epoch": last_epoch}, tmp)


def _read_model_file(path: Path, device: str) -> dict:
    """The contents of a model file, or one line saying in plain words why it is not one."""
    try:
        saved = read_tensors(path, device)
    except FileNotFoundError:
        raise InputError(f"{path}: model file not found") from None
    except Exception as e:  # torch's own message advises loading with weights_only=False: never repeated
        fault = ("it holds objects other than tensors and plain data, which could run code when loaded; "
                 "it was not read" if isinstance(e, pickle.UnpicklingError) and "GLOBAL" in str(e)
                 else "not a file written by torch.save")
        raise InputError(f"{path}: not a model.pt written by `cocoseg train` ({fault})") from None
    if isinstance(saved, dict) and "pytorch-lightning_version" in saved:
        raise InputError(f"{path}: a Lightning checkpoint of `cocoseg train`, not its model.pt; pass the model.pt "
                         f"it wrote beside summary.json (results/models/<variant>/seed-<n>/model.pt)")
    if not isinstance(saved, dict) or "variant" not in saved:
        raise InputError(f"{path}: not a model.pt written by `cocoseg train` (no variant settings in it)")
    return saved


def load_trained(path: Path, device: str = "cpu", epoch: str = "chosen"
                 ) -> tuple[torch.nn.Module, Variant, list[dict], int | None]:
    """A `model.pt` written by `train`, ready for inference: the chosen epoch's weights, or the last's.

    Read with `weights_only=True`: a file from elsewhere cannot run code when loaded.
    """
    saved = _read_model_file(path, device)
    try:
        variant = Variant(**saved["variant"])
        state = saved["last_state_dict"] if epoch == "last" else saved["state_dict"]
        model = build_model(variant.architecture, variant.encoder, None, len(saved["labels"]))
        model.load_state_dict(state)
    except Exception as e:  # other keys or shapes
        raise InputError(f"{path}: not a model.pt written by `cocoseg train` ({first_line(e)})") from None
    return model.to(device).eval(), variant, saved["labels"], saved.get("last_epoch" if epoch == "last" else "epoch")
