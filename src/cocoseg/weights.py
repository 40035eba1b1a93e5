"""Encoder weights: named ones (`imagenet`) fetched once, or a local file, always checked first.

Compute nodes are often offline, so the workflow fetches named weights on the submitting
machine (`cocoseg weights`) into a file that training jobs load without a network. A file from
elsewhere is read with `weights_only=True`: it cannot run code when loaded.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from torch import nn

from .common import InputError, first_line
from .files import atomic_path
from .modelfile import read_tensors
from .variants import is_weights_file


def file_checksum(path: str | os.PathLike) -> str:
    digest = hashlib.blake2b(digest_size=12)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def load_encoder_weights(model: nn.Module, path: Path, encoder: str) -> None:
    """Load a file's tensors into `model.encoder`, every key and shape matching."""
    try:
        model.encoder.load_state_dict(read_state_dict(path))
    except RuntimeError as e:
        raise InputError(f"{path}: does not fit the {encoder} encoder ({first_line(e)})") from None


def build_model(architecture: str, encoder: str, encoder_weights: str | None, num_classes: int) -> nn.Module:
    """Any SMP architecture by name; weights from a file, or by name (SMP downloads them)."""
    from_file = is_weights_file(encoder_weights)
    model = smp.create_model(arch=architecture, encoder_name=encoder,
                             encoder_weights=None if from_file else encoder_weights, in_channels=3,
                             classes=num_classes)
    if from_file:
        load_encoder_weights(model, Path(encoder_weights), encoder)
    return model


def config_problems(variants: dict) -> list[str]:
    """One line per setting that would fail only inside a training job, found before any job runs."""
    architectures = {name.lower() for name in smp.MODEL_ARCHITECTURES_MAPPING}
    encoders = smp.encoders.get_encoder_names()
    problems = []
    for name, v in variants.items():
        if v.architecture.lower() not in architectures:
            problems.append(f"config model.architecture: {v.architecture!r} is not one of "
                            f"segmentation_models_pytorch's ({', '.join(sorted(smp.MODEL_ARCHITECTURES_MAPPING))})")
        if v.encoder not in encoders:
            problems.append(f"config model.encoders: {v.encoder!r} is not an encoder segmentation_models_pytorch "
                            f"knows (for example resnet18, resnet50, mobilenet_v2, efficientnet-b0)")
        elif v.encoder_weights and not is_weights_file(v.encoder_weights):
            available = sorted(smp.encoders.encoders[v.encoder]["pretrained_settings"])
            if v.encoder_weights not in available:
                problems.append(f"config model.encoder_weights: {v.encoder_weights!r} is not available for "
                                f"{v.encoder} ({', '.join(available) or 'none'}; or give a file)")
        if v.gpu and v.accelerator == "cpu":
            problems.append(f"config for {name}: gpu: true asks for a GPU that accelerator: cpu would not use")
    return list(dict.fromkeys(problems))


def prepare(architecture: str, encoder: str, weights: str, output: Path) -> None:
    """Write `weights` for `encoder` as a checked state-dict file that loads without a network."""
    if is_weights_file(weights):
        model = build_model(architecture, encoder, weights, num_classes=1)
    else:
        os.environ.setdefault("TORCH_HOME", str(Path(output).parent / "cache"))
        os.environ.setdefault("HF_HOME", str(Path(output).parent / "cache"))
        try:
            model = build_model(architecture, encoder, weights, num_classes=1)
        except Exception as e:  # no network, unknown name, a hub error
            raise InputError(f"encoder weights {weights!r} for {encoder}: cannot be fetched ({first_line(e)}); "
                             f"set model.encoder_weights to a file holding torch.save(model.encoder.state_dict())"
                             ) from None
    with atomic_path(output) as tmp:
        torch.save(model.encoder.state_dict(), tmp)
