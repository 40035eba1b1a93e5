"""Variants: one trained model each, named for the workflow (`deeplabv3plus-resnet18-128`).

Kept free of torch so the Snakefile can import it cheaply to build its wildcards.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields, replace
from itertools import product

from .common import InputError

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin")


def is_weights_file(value: str | None) -> bool:
    """`encoder_weights` names a file (as opposed to weights SMP knows by name, such as `imagenet`)."""
    return bool(value) and (value.endswith(WEIGHT_SUFFIXES) or "/" in value or os.sep in value)


@dataclass
class Variant:
    architecture: str = "DeepLabV3Plus"
    encoder: str = "resnet18"
    encoder_weights: str | None = None
    image_size: tuple[int, int] = (128, 128)
    epochs: int = 12
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "poly"
    warmup_epochs: float = 1.0
    dice_weight: float = 0.0
    precision: str = "auto"
    seed: int = 0
    channels_last: bool = True
    accelerator: str = "auto"
    devices: int = 1
    gpu: bool = False  # ask the scheduler for GPUs (`resources: gpu`)
    name: str = field(default="")

    def __post_init__(self) -> None:
        size = self.image_size
        self.image_size = (int(size), int(size)) if isinstance(size, (int, float)) else tuple(int(v) for v in size)
        if len(self.image_size) != 2 or any(side <= 0 for side in self.image_size):
            raise InputError(f"image size {self.image_size}: give one side or [height, width], each positive "
                             f"(what each side must divide by depends on the architecture: `network.size_problem`)")
        if not self.name:
            h, w = self.image_size
            self.name = f"{self.architecture.lower()}-{self.encoder}-{h if h == w else f'{h}x{w}'}"

    def to_dict(self) -> dict:
        return asdict(self)

    def with_seed(self, seed: int) -> "Variant":
        return replace(self, seed=int(seed))


# Settings a variant may override; the seed is not one: every variant runs every `train.seeds`.
TRAIN_KEYS = {f.name for f in fields(Variant)} - {"architecture", "encoder", "encoder_weights", "image_size", "name",
                                                  "seed"}


def expand(model: dict, train: dict) -> dict[str, Variant]:
    """The grid architecture x encoders x image sizes, with per-variant overrides by name.

    Each variant is trained once per seed; the seed is set per run (`Variant.with_seed`).
    """
    common = {key: value for key, value in train.items() if key in TRAIN_KEYS}
    variants = {}
    for encoder, size in product(model["encoders"], model["image_sizes"]):
        try:
            v = Variant(architecture=model["architecture"], encoder=encoder,
                        encoder_weights=model["encoder_weights"], image_size=size, **common)
        except (InputError, TypeError, ValueError) as e:
            raise InputError(f"config model.image_sizes: {size!r}: {e}") from None
        variants[v.name] = v
    for name, override in (model.get("overrides") or {}).items():
        if name not in variants:
            raise InputError(f"model.overrides names {name!r}, which is not a variant ({', '.join(variants)})")
        unknown = sorted(set(override) - TRAIN_KEYS)
        if unknown:
            raise InputError(f"model.overrides.{name}: unknown key(s) {', '.join(unknown)}; "
                             f"allowed: {', '.join(sorted(TRAIN_KEYS))}")
        variants[name] = Variant(**{**variants[name].to_dict(), **override, "name": name})
    return variants
