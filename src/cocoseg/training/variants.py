"""Variants: one trained model each, named for the workflow (`deeplabv3plus-resnet18-128`).

Kept free of torch so the Snakefile can import it cheaply to build its wildcards.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, fields, replace
from itertools import product

from cocoseg.shared.errors import InputError

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin")
# Loss terms a variant may sum with "+" (`ce+dice`): cross-entropy and segmentation_models_pytorch's
# losses (`cocoseg.training.losses` builds them), each ignoring label 255.
LOSS_TERMS = ("ce", "dice", "focal", "jaccard", "lovasz")
CLASS_WEIGHTS = ("none", "inverse_sqrt_frequency")  # how the cross-entropy term weighs classes
# How training and inference scale an image before the variant's crop (`cocoseg.training.scaling`).
RESIZES = ("short_side", "fit")


def loss_problem(loss: str) -> str | None:
    """Why `loss` names no loss this package builds, or None."""
    terms = loss.split("+") if isinstance(loss, str) else [loss]
    unknown = [term for term in terms if term not in LOSS_TERMS]
    if unknown or len(set(terms)) != len(terms):
        return f"{loss!r} is not one of {', '.join(LOSS_TERMS)} or a sum of them (e.g. ce+dice)"
    return None


def loss_weights_problem(loss: str, weights: tuple[float, ...] | None) -> str | None:
    """Why `weights` cannot weigh the terms of `loss`, or None: one positive number per term (a
    term of weight 0 would train what the loss without it trains, under another name)."""
    if weights is None:
        return None
    terms = loss.split("+")
    if len(weights) != len(terms):
        return f"{list(weights)}: give one weight per term of {loss!r} ({len(terms)})"
    if any(not w > 0 for w in weights):
        return f"{list(weights)}: every weight must be above 0 (drop the term from the loss instead)"
    return None


def recipe_problem(base_short_side: int | None, scale_range: tuple[float, ...], crop_max_share: float) -> str | None:
    """Why the scale recipe's settings do not go together, or None (`resize` is checked against
    its choices with the other settings that have them)."""
    if base_short_side is not None and int(base_short_side) < 1:
        return f"base_short_side {base_short_side}: a positive number of pixels, or null for the variant's short side"
    if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
        return f"scale_range {list(scale_range)}: [low, high] with 0 < low <= high"
    if not 0 < crop_max_share <= 1:
        return f"crop_max_share {crop_max_share}: above 0 and at most 1 (1: any crop)"
    return None


def is_weights_file(value: str | None) -> bool:
    """`encoder_weights` names a file (as opposed to weights SMP knows by name, such as `imagenet`)."""
    return bool(value) and (value.endswith(WEIGHT_SUFFIXES) or "/" in value or os.sep in value)


SCHEDULES = ("poly", "cosine")  # the learning rate's decay after the warm-up
ACCELERATORS = ("auto", "cpu", "gpu")


def setting(default, help: str, choices: tuple[str, ...] | None = None, minimum: int | None = None):
    """A variant's setting: its default, what it does (the command line's help) and the values it
    takes, held once here for the workflow, the command line and the checks."""
    return field(default=default, metadata={"help": help, "choices": choices, "minimum": minimum})


@dataclass
class Variant:
    architecture: str = setting("DeepLabV3Plus", "a segmentation_models_pytorch architecture")
    encoder: str = setting("resnet18", "a segmentation_models_pytorch encoder")
    encoder_weights: str | None = setting(None, "imagenet (downloaded by SMP), a file from `cocoseg weights`, "
                                                "or none for random init")
    image_size: tuple[int, int] = setting((128, 128), "the training crop, H,W or one side, e.g. 512,512")
    epochs: int = setting(12, "epochs to train", minimum=1)
    batch_size: int = setting(16, "images per batch (per process under DDP)", minimum=1)
    lr: float = setting(1e-3, "peak learning rate of AdamW")
    weight_decay: float = setting(1e-4, "AdamW weight decay")
    schedule: str = setting("poly", "learning-rate decay after the warm-up", SCHEDULES)
    warmup_epochs: float = setting(1.0, "epochs of linear warm-up before the decay")
    loss: str = setting("ce", "ce, dice, focal, jaccard, lovasz, or a sum such as ce+dice")
    loss_weights: tuple[float, ...] | None = setting(None, "one weight per loss term, e.g. 1,0.5 (unset: each 1)")
    class_weights: str = setting("none", "weights of the cross-entropy term per class, from the split's pixel "
                                         "counts", CLASS_WEIGHTS)
    freeze_encoder_epochs: int = setting(0, "train the decoder alone for this many epochs first")
    resize: str = setting("short_side", "short_side: the short side scaled to the base length, aspect kept; fit: "
                                        "the image fitted inside the variant's size", RESIZES)
    base_short_side: int | None = setting(None, "resize short_side: the length the short side is scaled to (unset: "
                                                "the variant's shorter side)")  # checked by recipe_problem
    scale_range: tuple[float, float] = setting((0.5, 2.0), "training's random ratio around the base scale, LOW,HIGH")
    crop_max_share: float = setting(0.75, "retry a training crop (up to 10 times) while one label covers more than "
                                          "this share of its labelled pixels (1: any crop)")
    precision: str = setting("auto", "auto, 32-true, bf16-mixed or 16-mixed")
    seed: int = setting(0, "seed of weights, data order and augmentation")
    channels_last: bool = setting(True, "run the network channels-last")
    accelerator: str = setting("auto", "auto: the GPU where CUDA can use one", ACCELERATORS)
    devices: int = setting(1, "processes: GPUs, or CPU processes with accelerator cpu; above 1 trains with DDP",
                           minimum=1)
    gpu: bool = setting(False, "the scheduler is asked for GPUs (`resources: gpu`)")
    name: str = setting("", "variant name (unset: <architecture>-<encoder>-<size>)")

    def __post_init__(self) -> None:
        for f in fields(self):  # a YAML or JSON 1 for a float setting: 1.0, whichever way the variant came
            if isinstance(f.default, float) and isinstance(getattr(self, f.name), int):
                setattr(self, f.name, float(getattr(self, f.name)))
        size = self.image_size
        self.image_size = (int(size), int(size)) if isinstance(size, (int, float)) else tuple(int(v) for v in size)
        if len(self.image_size) != 2 or any(side <= 0 for side in self.image_size):
            raise InputError(f"image size {self.image_size}: give one side or [height, width], each positive "
                             f"(what each side must divide by depends on the architecture: `network.size_problem`)")
        if problem := loss_problem(self.loss):
            raise InputError(f"loss {problem}")
        if self.loss_weights is not None:
            self.loss_weights = tuple(float(w) for w in self.loss_weights)
        if problem := loss_weights_problem(self.loss, self.loss_weights):
            raise InputError(f"loss_weights {problem}")
        self.scale_range = tuple(float(r) for r in self.scale_range)
        if problem := recipe_problem(self.base_short_side, self.scale_range, self.crop_max_share):
            raise InputError(problem)
        for f in fields(self):
            value, choices, minimum = getattr(self, f.name), f.metadata["choices"], f.metadata["minimum"]
            if choices and value not in choices:
                raise InputError(f"{f.name} {value!r} is not one of {', '.join(choices)}")
            if minimum is not None and value is not None and value < minimum:
                raise InputError(f"{f.name} {value}: at least {minimum}")
        if not 0 <= self.freeze_encoder_epochs <= self.epochs:
            raise InputError(f"freeze_encoder_epochs {self.freeze_encoder_epochs}: from 0 to epochs ({self.epochs})")
        if not self.name:
            h, w = self.image_size
            self.name = f"{self.architecture.lower()}-{self.encoder}-{h if h == w else f'{h}x{w}'}"

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        """Every setting as one JSON object: how the workflow hands a variant to its training job."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, **overrides) -> "Variant":
        """The variant `to_json` wrote, with `overrides` on top; a setting this package does not
        know, or text that is not a JSON object, is refused in one line."""
        try:
            settings = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"variant settings are not JSON ({e})") from None
        if not isinstance(settings, dict):
            raise InputError(f"variant settings: expected a JSON object, got {type(settings).__name__}")
        unknown = sorted(set(settings) - {f.name for f in fields(cls)})
        if unknown:
            raise InputError(f"variant settings: unknown setting(s) {', '.join(unknown)}")
        return cls(**{**settings, **overrides})

    def with_seed(self, seed: int) -> "Variant":
        return replace(self, seed=int(seed))


# Settings a variant may override; the seed is not one: every variant runs every `train.seeds`.
TRAIN_KEYS = {f.name for f in fields(Variant)} - {"architecture", "encoder", "encoder_weights", "image_size", "name",
                                                  "seed"}


# How a grid setting reads in a variant name; other keys appear without underscores.
NAME_LABELS = {"batch_size": "bs", "weight_decay": "wd", "epochs": "ep", "warmup_epochs": "warmup",
               "base_short_side": "base", "crop_max_share": "catmax"}


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
    label = NAME_LABELS.get(key, key.replace('_', ''))
    if isinstance(value, (list, tuple)):
        return f"{label}{'-'.join(_number(v) for v in value)}"
    return f"{label}{_number(value)}"


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
        kind = GRID_KINDS.get(key, type(base[key]))
        accepted = (int, float) if kind is float else (kind,)
        for value in values:
            if not isinstance(value, accepted) or (isinstance(value, bool) and kind is not bool):
                raise InputError(f"config model.grid.{key}: {value!r} is not of the kind {key} takes "
                                 f"({kind.__name__})")
    return [[(key, float(value) if isinstance(base[key], float) else value) for value in values]
            for key, values in grid.items()]


# Grid values of settings whose default is None or a tuple: what YAML gives for them.
GRID_KINDS = {"loss_weights": list, "scale_range": list, "base_short_side": int}


def _same(a, b) -> bool:
    """Equal as settings: a YAML list equals the tuple a variant holds."""
    return (list(a) if isinstance(a, tuple) else a) == (list(b) if isinstance(b, tuple) else b)


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
                              {key: value for key, value in settings.items() if not _same(value, base[key])})
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
