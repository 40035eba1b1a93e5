"""Which category becomes which label value, and what unlabelled pixels mean.

Two kinds of data set: one that annotates objects on a "background" (COCO instances: pixels no
annotation covers are label 0, a class the model learns), and one that labels every pixel
(COCO-Stuff, COCO panoptic: a pixel no annotation covers is unlabelled, and no metric counts it).
`unlabeled` chooses: with "background", label 0 is background and the classes are 1..K; with
"ignore", unlabelled pixels are 255 and the classes are 0..K-1, so no output of the model is spent
on a class the data set does not have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from cocoseg.shared.errors import InputError
from cocoseg.shared.files import is_integer
from cocoseg.shared.labels import BACKGROUND, IGNORE, MAX_CLASSES

UNLABELED = ("background", "ignore")
AUTO = "auto"  # background for one instances-format file; ignore for several (things and stuff) or panoptic


def resolve_unlabeled(choice: str, labels_every_pixel: bool) -> str:
    """`choice`, or for "auto" what the input implies: ignore where the split's input labels
    every pixel (several files, as COCO-Stuff; panoptic), background otherwise."""
    if choice != AUTO:
        return choice
    return "ignore" if labels_every_pixel else "background"


@dataclass(frozen=True)
class LabelRules:
    """The mask stage's choices about labels, from the config's `classes` and `masks` keys."""

    classes: Sequence[int | str] | None = None  # names or ids to keep, in label order; None: all by id
    unlabeled: str = "background"  # what a pixel no annotation covers becomes
    ignore_categories: Sequence[int] = ()  # category ids painted as ignore (255), never a class

    def __post_init__(self):
        if self.unlabeled not in UNLABELED:
            raise InputError(f"unlabeled must be one of {', '.join(UNLABELED)}, not {self.unlabeled!r}")

    @property
    def background(self) -> bool:
        """Whether label 0 is a background class."""
        return self.unlabeled == "background"

    @property
    def fill(self) -> int:
        """The value of a pixel no annotation covers."""
        return BACKGROUND if self.background else IGNORE


def category_names(path, categories) -> dict[int, str]:
    """Each category's id and name, checked: an integer id, declared once in the file."""
    names: dict[int, str] = {}
    for i, cat in enumerate(categories):
        if not isinstance(cat, dict) or not is_integer(cat.get("id")):
            raise InputError(f"{path}: categories[{i}] has no integer 'id'")
        if cat["id"] in names:
            raise InputError(f"{path}: category id {cat['id']} is declared twice")
        names[cat["id"]] = str(cat.get("name", cat["id"]))
    return names


def label_map(where, names: dict[int, str], rules: LabelRules = LabelRules()) -> list[tuple[int, int, str]]:
    """(label, category id, name) of the classes: the sorted ids, or `rules.classes` in their
    order, less the ignored categories; labels count from 1 after background, else from 0."""
    for cid in rules.ignore_categories:
        if cid not in names:
            raise InputError(f"{where}: ignore category {cid} is not among its categories")
    if rules.classes is None:
        chosen = [cid for cid in sorted(names) if cid not in rules.ignore_categories]
    else:
        by_name = {name: cid for cid, name in names.items()}
        chosen = []
        for wanted in rules.classes:
            cid = wanted if is_integer(wanted) else by_name.get(wanted)
            if cid not in names:
                raise InputError(f"{where}: class {wanted!r} from the config is not among its categories")
            if cid in chosen:
                raise InputError(f"{where}: class {wanted!r} is listed twice in the config")
            if cid in rules.ignore_categories:
                raise InputError(f"{where}: class {wanted!r} is also an ignore category")
            chosen.append(cid)
    if len(chosen) > MAX_CLASSES:
        raise InputError(f"{where}: {len(chosen)} classes do not fit in uint8 masks (at most {MAX_CLASSES})")
    first = 1 if rules.background else 0
    return [(first + i, cid, names[cid]) for i, cid in enumerate(chosen)]
