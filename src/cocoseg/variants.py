"""Variants: one trained model each, named for the workflow (`deeplabv3plus-resnet18-128`).

Kept free of torch so the Snakefile can import it cheaply to build its wildcards.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field, fields, replace
from itertools import product

from .common import InputError

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin")
# Loss terms a variant may sum with "+" (`ce+dice`): cross-entropy and segmentation_models_pytorch's
# losses (`cocoseg.losses` builds them), each ignoring label 255.
LOSS_TERMS = ("ce", "dice", "focal", "jaccard", "lovasz")
CLASS_WEIGHTS = ("none", "inverse_sqrt_frequency")  # how the cross-entropy term weighs classes


def loss_problem(loss: str) -> str | None:
    """Why `loss` names no loss this package builds, or None."""
    terms = loss.split("+") if isinstance(loss, str) else [loss]
    unknown = [term for term in terms if term not in LOSS_TERMS]
    if unknown or len(set(terms)) != len(terms):
        return f"{loss!r} is not one of {', '.join(LOSS_TERMS)} or a sum of them (e.g. ce+dice)"
    return None


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
    loss: str = "ce"
    dice_weight: float = 0.0
    class_weights: str = "none"
    freeze_encoder_epochs: int = 0
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
        if problem := loss_problem(self.loss):
            raise InputError(f"loss {problem}")
        if self.class_weights not in CLASS_WEIGHTS:
            raise InputError(f"class_weights {self.class_weights!r} is not one of {', '.join(CLASS_WEIGHTS)}")
        if not 0 <= self.freeze_encoder_epochs <= self.epochs:
            raise InputError(f"freeze_encoder_epochs {self.freeze_encoder_epochs}: from 0 to epochs ({self.epochs})")
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


# How a grid setting reads in a variant name; other keys appear without underscores.
NAME_LABELS = {"batch_size": "bs", "weight_decay": "wd", "epochs": "ep", "warmup_epochs": "warmup",
               "dice_weight": "dice"}


def _number(value: float) -> str:
    """3e-4, 0.5, 16: short and exact enough to tell grid values apart."""
    if isinstance(value, float) and value and abs(value) < 0.01:
        mantissa, exponent = f"{value:e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def setting_label(key: str, value) -> str:
    """A grid setting as it appears in a variant name: `lr3e-4`, `bs8`, `cosine`, `no-channels-last`."""
    if isinstance(value, bool):
        return key.replace("_", "-") if value else f"no-{key.replace('_', '-')}"
    if isinstance(value, str):
        return value
    return f"{NAME_LABELS.get(key, key.replace('_', ''))}{_number(value)}"


def variant_name(architecture: str, encoder: str, size: tuple[int, int], settings: dict) -> str:
    """`<architecture>-<encoder>-<size>` and the grid settings that differ from `train:`, in grid order.

    Settings equal to `train:` never appear, so adding a value to a grid axis renames no
    variant that existed (and retrains none).
    """
    h, w = size
    parts = [architecture.lower(), encoder, str(h) if h == w else f"{h}x{w}",
             *(setting_label(key, value) for key, value in settings.items())]
    return re.sub(r"[^a-z0-9._-]+", "-", "-".join(parts).lower())


def _grid_axes(model: dict, base: dict) -> list[list[tuple[str, object]]]:
    """Each `model.grid` axis as (key, value) pairs; unknown keys and values of the wrong kind refused."""
    grid = model.get("grid") or {}
    unknown = sorted(set(grid) - TRAIN_KEYS)
    if unknown:
        raise InputError(f"config model.grid: unknown key(s) {', '.join(unknown)}; "
                         f"allowed: {', '.join(sorted(TRAIN_KEYS))}")
    for key, values in grid.items():
        for value in values if key == "loss" else []:
            if problem := loss_problem(value):
                raise InputError(f"config model.grid.loss: {problem}")
        kind = type(base[key])
        accepted = (int, float) if kind is float else (kind,)
        for value in values:
            if not isinstance(value, accepted) or (isinstance(value, bool) and kind is not bool):
                raise InputError(f"config model.grid.{key}: {value!r} is not of the kind {key} takes "
                                 f"({kind.__name__})")
    return [[(key, float(value) if isinstance(base[key], float) else value) for value in values]
            for key, values in grid.items()]


def expand(model: dict, train: dict) -> dict[str, Variant]:
    """The grid architectures x encoders x image sizes x `model.grid` axes, with per-variant
    overrides by name.

    Each variant is trained once per seed; the seed is set per run (`Variant.with_seed`).
    """
    common = {key: value for key, value in train.items() if key in TRAIN_KEYS}
    if problem := loss_problem(common.get("loss", "ce")):
        raise InputError(f"config train.loss: {problem}")
    base = {**Variant().to_dict(), **common}
    architectures = model.get("architectures") or [model["architecture"]]
    variants = {}
    for architecture, encoder, size, *settings in product(architectures, model["encoders"], model["image_sizes"],
                                                           *_grid_axes(model, base)):
        settings = dict(settings)
        try:
            v = Variant(architecture=architecture, encoder=encoder, encoder_weights=model["encoder_weights"],
                        image_size=size, **{**common, **settings})
        except (InputError, TypeError, ValueError) as e:
            raise InputError(f"config model.image_sizes: {size!r}: {e}") from None
        v.name = variant_name(architecture, encoder, v.image_size,
                              {key: value for key, value in settings.items() if value != base[key]})
        if v.name in variants:
            raise InputError(f"config model: two variants would both be named {v.name!r}; give each grid value once")
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
