"""The segmentation network: any SMP architecture by name, and the input sides it accepts."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from torch import nn

from cocoseg.shared.errors import InputError, first_line
from cocoseg.shared.files import atomic_path
from cocoseg.training.encoder_weights import load_encoder_weights
from cocoseg.training.variants import is_weights_file


def build_model(architecture: str, encoder: str, encoder_weights: str | None, num_classes: int) -> nn.Module:
    """Any SMP architecture by name; encoder weights from a file, or by name (SMP downloads them)."""
    from_file = is_weights_file(encoder_weights)
    model = smp.create_model(arch=architecture, encoder_name=encoder,
                             encoder_weights=None if from_file else encoder_weights, in_channels=3,
                             classes=num_classes)
    if from_file:
        load_encoder_weights(model.encoder, Path(encoder_weights), encoder)
    return model


@lru_cache(maxsize=None)
def input_divisor(architecture: str, encoder: str) -> int:
    """What each input side must divide by: the encoder's output stride, as SMP checks it in
    `forward`, or 1 where the architecture takes any size (Unet).

    The network is built on the meta device (no memory, no weights); encoders that cannot be
    built there are built on the CPU.
    """
    def build() -> nn.Module:
        return smp.create_model(arch=architecture, encoder_name=encoder, encoder_weights=None, classes=2)

    try:
        with torch.device("meta"):
            model = build()
    except Exception:  # an encoder that reads values while it is built
        model = build()
    return model.encoder.output_stride if model.requires_divisible_input_shape else 1


def size_problem(architecture: str, encoder: str, size: tuple[int, int]) -> str | None:
    """Why `size` (height, width) cannot go through the network, or None."""
    divisor = input_divisor(architecture, encoder)
    if any(side % divisor for side in size):
        return (f"{size[0]}x{size[1]}: each side must be a multiple of {divisor} for {architecture} with "
                f"{encoder} (its output stride)")
    return None


def save_encoder_weights(encoder: str, weights: str, output: Path) -> None:
    """Write `weights` for `encoder` as a checked state-dict file that loads without a network.

    Only the encoder is built (SMP's `get_encoder`), whatever architecture will use it: the
    encoder's tensors are the same under every architecture (DeepLabV3's dilation changes no
    weight), and no network of an architecture the grid does not hold is built or fetched. A name
    (`imagenet`) is fetched here, on the machine that has the network; a file is checked against
    the encoder (every key and shape) and written again.
    """
    if not is_weights_file(weights):
        os.environ.setdefault("TORCH_HOME", str(Path(output).parent / "cache"))
        os.environ.setdefault("HF_HOME", str(Path(output).parent / "cache"))
    from_file = is_weights_file(weights)
    try:
        module = smp.encoders.get_encoder(encoder, in_channels=3, weights=None if from_file else weights)
        if from_file:
            load_encoder_weights(module, Path(weights), encoder)
    except InputError:
        raise
    except Exception as e:  # no network, unknown name, a hub error
        raise InputError(f"encoder weights {weights!r} for {encoder}: cannot be fetched ({first_line(e)}); "
                         f"set model.encoder_weights to a file holding torch.save(model.encoder.state_dict())"
                         ) from None
    with atomic_path(output) as tmp:
        torch.save(module.state_dict(), tmp)


def count_parameters(model: nn.Module) -> int:
    """The network's size in parameters, as the report's tables give it."""
    return sum(p.numel() for p in model.parameters())
