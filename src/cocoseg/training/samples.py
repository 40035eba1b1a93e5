"""Reading a split's image and mask pairs, checked against its manifest: the samples of
training, selection, evaluation and the export check. The pairs come from the split folder's
files (`SplitFolder`) or from its packed parts (`masks.packed`, staged or not): the same bytes
either way, so the same samples.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from cocoseg.masks.packed import PackedSplit
from cocoseg.shared.errors import InputError
from cocoseg.shared.image_decoding import is_reduced, read_rgb

FOLDERS = {"image": "images", "mask": "masks"}


class SplitFolder:
    """A split folder's files, one per image and mask."""

    def __init__(self, split_dir: Path):
        self.split_dir = Path(split_dir)

    def _name(self, row: dict, member: str) -> str:
        return row["file_name"] if member == "image" else row["mask"]

    def check(self, rows: list[dict]) -> None:
        check_files_exist(self.split_dir, rows)

    def where(self, row: dict, member: str) -> str:
        return f"{self.split_dir}: {FOLDERS[member]}/{self._name(row, member)}"

    def read(self, row: dict, member: str) -> Path:
        return self.split_dir / FOLDERS[member] / self._name(row, member)


SplitFiles = SplitFolder | PackedSplit  # where a split's samples are read: its folder, or its packed parts


def load_mask(source: Path | io.BytesIO) -> np.ndarray:
    with Image.open(source) as im:
        return np.array(im)


def _missing(split_dir: Path, folder: str, name: str) -> InputError:
    return InputError(f"{split_dir}: {folder}/{name}: missing (rerun the mask stage)")


def check_files_exist(split_dir: Path, rows: list[dict]) -> None:
    """Stop before any work when a listed file has gone (a stat each: cheap next to decoding)."""
    for row in rows:
        for folder, name in (("images", row["file_name"]), ("masks", row["mask"])):
            if not (Path(split_dir) / folder / name).exists():
                raise _missing(split_dir, folder, name)


def _read(files: SplitFiles, row: dict, member: str, load):
    source = files.read(row, member)
    try:
        return load(source)
    except InputError as e:  # the pixel limit: a file names itself, bytes are named here
        if isinstance(source, io.BytesIO):
            raise InputError(f"{files.where(row, member)}: {e}") from None
        raise
    except FileNotFoundError:  # gone since `check`
        raise InputError(f"{files.where(row, member)}: missing (rerun the mask stage)") from None
    except Exception as e:  # truncated, not an image, unreadable
        raise InputError(f"{files.where(row, member)}: unreadable ({e})") from None


def _check_size(files: SplitFiles, row: dict, member: str, width: int, height: int) -> None:
    if (width, height) != (int(row["width"]), int(row["height"])):
        raise InputError(f"{files.where(row, member)}: differs from the manifest in size ({width}x{height}, "
                         f"not {row['width']}x{row['height']}; rerun the mask stage)")


def read_sample(files: SplitFiles, row: dict, reduce_to: int | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Image and mask of one manifest row; InputError naming the file when either went bad.

    Files can change after the mask stage (deleted, cut short, replaced): the run stops with one
    line rather than train on, or score, something other than what the manifest lists.
    With `reduce_to`, an image whose longest side is at least twice that (`is_reduced`) comes
    back with its mask at longest side `reduce_to` (JPEGs decoded reduced, see `read_rgb`;
    area-averaged image, nearest-label mask), as training needs no more.
    """
    image, (width, height) = _read(files, row, "image", lambda source: read_rgb(source, reduce_to))
    _check_size(files, row, "image", width, height)
    mask = _read(files, row, "mask", load_mask)
    _check_size(files, row, "mask", mask.shape[1], mask.shape[0])
    if is_reduced(width, height, reduce_to):
        scale = reduce_to / max(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
    return image, mask


def load_sample(split_dir: Path, row: dict, reduce_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`read_sample` from the split folder's files."""
    return read_sample(SplitFolder(split_dir), row, reduce_to)
