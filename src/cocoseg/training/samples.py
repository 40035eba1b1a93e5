"""Reading a split folder's image and mask pairs, checked against its manifest: the samples of
training, selection, evaluation and the export check."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from cocoseg.shared.errors import InputError
from cocoseg.shared.image_decoding import is_reduced, read_rgb


def load_mask(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im)


def _missing(split_dir: Path, folder: str, name: str) -> InputError:
    return InputError(f"{split_dir}: {folder}/{name}: missing (rerun the mask stage)")


def check_files_exist(split_dir: Path, rows: list[dict]) -> None:
    """Stop before any work when a listed file has gone (a stat each: cheap next to decoding)."""
    for row in rows:
        for folder, name in (("images", row["file_name"]), ("masks", row["mask"])):
            if not (Path(split_dir) / folder / name).exists():
                raise _missing(split_dir, folder, name)


def _read(split_dir: Path, folder: str, name: str, load):
    try:
        return load(Path(split_dir) / folder / name)
    except InputError:
        raise
    except FileNotFoundError:  # gone since `check_files_exist`
        raise _missing(split_dir, folder, name) from None
    except Exception as e:  # truncated, not an image, unreadable
        raise InputError(f"{split_dir}: {folder}/{name}: unreadable ({e})") from None


def _check_size(split_dir: Path, folder: str, name: str, width: int, height: int, row: dict) -> None:
    if (width, height) != (int(row["width"]), int(row["height"])):
        raise InputError(f"{split_dir}: {folder}/{name}: differs from the manifest in size ({width}x{height}, "
                         f"not {row['width']}x{row['height']}; rerun the mask stage)")


def load_sample(split_dir: Path, row: dict, reduce_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Image and mask of one manifest row; InputError naming the file when either went bad.

    Files can change after the mask stage (deleted, cut short, replaced): the run stops with one
    line rather than train on, or score, something other than what the manifest lists.
    With `reduce_to`, an image whose longest side is at least twice that (`is_reduced`) comes
    back with its mask at longest side `reduce_to` (JPEGs decoded reduced, see `read_rgb`;
    area-averaged image, nearest-label mask), as training needs no more.
    """
    image, (width, height) = _read(split_dir, "images", row["file_name"], lambda path: read_rgb(path, reduce_to))
    _check_size(split_dir, "images", row["file_name"], width, height, row)
    mask = _read(split_dir, "masks", row["mask"], load_mask)
    _check_size(split_dir, "masks", row["mask"], mask.shape[1], mask.shape[0], row)
    if is_reduced(width, height, reduce_to):
        scale = reduce_to / max(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
    return image, mask
