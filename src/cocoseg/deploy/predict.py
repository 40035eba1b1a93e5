"""Prediction on a folder of new images, whole or one shard at a time, and the folder it writes.

    OUT/masks/<path>.png       uint8 masks: the label values of OUT/labels.csv
    OUT/overlays/<path>.png    the image with its mask in colour (unless overlays are off)
    OUT/labels.csv             the model's label map
    OUT/manifest.csv           every file found under the image folder: ok, or skipped with the reason
    OUT/prediction.json        the model that predicted (variant, seed, epoch, file checksum), counts

<path> is the image's path under the image folder, its suffix replaced by .png. A shard writes
the same layout for its share of the files; gathering the shards gives the same bytes whatever
their number. This module alone writes and reads the prediction manifest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from cocoseg.evaluation.predictor import in_order, inference_device, scored_predictor
from cocoseg.masks.png import encode_mask_png
from cocoseg.masks.split_folder import label_map_difference, read_label_map, write_label_map
from cocoseg.shared.colours import palette
from cocoseg.shared.errors import InputError, first_line
from cocoseg.shared.files import (
    atomic_path,
    checksum,
    file_checksum,
    output_problem,
    read_csv,
    read_json,
    write_bytes,
    write_json,
)
from cocoseg.shared.image_decoding import load_rgb, scaling_note
from cocoseg.shared.manifests import OK, SKIPPED, status_counts, write_manifest
from cocoseg.shared.progress import CountLines, say
from cocoseg.shared.shards import gather_shards, shard_share

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
MANIFEST_COLUMNS = ["file", "status", "reason", "note", "width", "height", "mask", "mask_checksum"]
INFO_FILE = "prediction.json"


@dataclass(frozen=True)
class Found:
    """A file under the image folder (its POSIX path there) and why it is skipped unread, if it is."""

    file: str
    fault: str = ""


def mask_name(file: str) -> str:
    return PurePosixPath(file).with_suffix(".png").as_posix()


def found_files(folder: Path) -> list[Found]:
    """Every file under `folder` (links to folders are not followed), sorted by path. A file that is
    not an image, or whose mask name an earlier image already takes (a.jpg and a.png), is marked."""
    paths = []
    for root, _, files in os.walk(folder):
        paths += [Path(root, name).relative_to(folder).as_posix() for name in files]
    found, owner_of_mask = [], {}
    for path in sorted(paths):
        suffix = PurePosixPath(path).suffix.lower()
        if suffix not in IMAGE_SUFFIXES:
            found.append(Found(path, f"not an image file (suffix {suffix or 'none'})"))
        elif (mask := mask_name(path)) in owner_of_mask:
            found.append(Found(path, f"its mask would be {mask}, already {owner_of_mask[mask]}'s"))
        else:
            owner_of_mask[mask] = path
            found.append(Found(path))
    return found


def read_image(path: Path) -> tuple[np.ndarray | None, str, str]:
    """The image's RGB pixels, or None and why it cannot be used (the mask stage's words);
    and a note on how it was read where more than a plain conversion (16-bit scaled)."""
    try:
        with Image.open(path) as im:
            mode = im.mode
        return load_rgb(path), "", scaling_note(mode)
    except InputError as e:  # above the pixel limit
        return None, str(e).removeprefix(f"{path}: "), ""
    except UnidentifiedImageError:
        return None, "image unreadable: not a known image format", ""
    except (OSError, SyntaxError, ValueError) as e:
        return None, f"image unreadable: {first_line(e)}", ""


class FolderImages(Dataset):
    """The found files with their pixels (or the reason there are none), read in loader workers."""

    def __init__(self, folder: Path, files: list[Found]):
        self.folder, self.files = Path(folder), files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Found, np.ndarray | None, str, str]:
        found = self.files[index]
        if found.fault:
            return found, None, found.fault, ""
        return (found, *read_image(self.folder / found.file))


def manifest_row(file: str, status: str, reason: str = "", note: str = "", size: tuple[int, int] | None = None,
                 mask: str = "", mask_checksum: str = "") -> dict:
    width, height = size or ("", "")
    return {"file": file, "status": status, "reason": reason, "note": note, "width": width, "height": height,
            "mask": mask, "mask_checksum": mask_checksum}


def read_manifest(prediction_dir: Path) -> list[dict]:
    return read_csv(Path(prediction_dir) / "manifest.csv", "a manifest.csv of `cocoseg predict`", MANIFEST_COLUMNS)


def _check_folders(images_dir: Path, output_dir: Path) -> None:
    if not images_dir.is_dir():
        raise InputError(f"{images_dir}: image folder not found")
    if images_dir.resolve() == output_dir.resolve() or images_dir.resolve() in output_dir.resolve().parents:
        raise InputError(f"{output_dir}: inside the image folder {images_dir}; a rerun would read its own output")
    if problem := output_problem(output_dir):
        raise InputError(problem)


def _start_output(output_dir: Path, labels: list[dict], model_path: Path) -> None:
    """Refuse a folder of predictions under another label map; clear our own earlier masks."""
    labels_file = output_dir / "labels.csv"
    if labels_file.exists() and (difference := label_map_difference(labels, read_label_map(labels_file),
                                                                    ("the model", "the folder"))):
        raise InputError(f"{model_path} and {labels_file}: label maps differ ({difference}); "
                         f"write these predictions to another folder")
    if (output_dir / "manifest.csv").exists():  # an earlier prediction here: its masks may name gone files
        for sub in ("masks", "overlays"):
            for old in (output_dir / sub).rglob("*.png"):
                old.unlink()


def predict(model_path: Path, images_dir: Path, output_dir: Path, cpus: int = 1, shard: int = 0, shards: int = 1,
            overlays: bool = True, gpu_requested: bool = False, allow_cpu_fallback: bool = False,
            inference: dict | None = None) -> dict:
    """Masks (and overlays) for every image under `images_dir`, or for shard `shard` of `shards`
    of them; returns prediction.json's content. A file that cannot be used is skipped and its
    reason goes to the manifest and stderr; its neighbours are still predicted. `inference`:
    how to infer (`predictor.scored_predictor`), by default the whole image once."""
    images_dir, output_dir = Path(images_dir), Path(output_dir)
    _check_folders(images_dir, output_dir)
    files = shard_share(found_files(images_dir), shard, shards)
    device, workers = inference_device(cpus, gpu_requested, allow_cpu_fallback)
    predictor = scored_predictor(model_path, device, inference)
    _start_output(output_dir, predictor.labels, model_path)
    colours = palette(predictor.labels)
    loader = in_order(FolderImages(images_dir, files), min(workers, len(files)))
    progress = CountLines(f"predict{f' shard {shard + 1}/{shards}' if shards > 1 else ''}", len(files))
    rows = []
    for found, image, reason, note in loader:
        progress.step()
        if image is None:
            say(f"skipped {images_dir / found.file}: {reason}")
            rows.append(manifest_row(found.file, SKIPPED, reason))
            continue
        prediction = predictor(image)
        mask, data = mask_name(found.file), encode_mask_png(prediction)
        write_bytes(output_dir / "masks" / mask, data)
        if overlays:
            with atomic_path(output_dir / "overlays" / mask) as tmp:
                Image.fromarray(colours.overlay(image, prediction)).save(tmp, format="PNG")
        rows.append(manifest_row(found.file, OK, "", note, (image.shape[1], image.shape[0]), mask, checksum(data)))
    info = {"model": Path(model_path).as_posix(), "model_checksum": file_checksum(model_path),
            "variant": predictor.variant.name, "seed": predictor.variant.seed, "epoch": predictor.epoch,
            "inference": predictor.inference(), **status_counts(rows)}
    write_prediction_folder(output_dir, predictor.labels, rows, info)
    return info


def write_prediction_folder(output_dir: Path, labels: list[dict], rows: list[dict], info: dict) -> None:
    (output_dir / "masks").mkdir(parents=True, exist_ok=True)
    write_label_map(output_dir / "labels.csv", labels)
    write_manifest(output_dir / "manifest.csv", MANIFEST_COLUMNS, rows)
    write_json(output_dir / INFO_FILE, info)


def gather_predictions(shard_dirs: list[Path], output_dir: Path) -> dict:
    """One prediction folder from its shards' folders, in shard order; shards made by different
    models or label maps are refused."""
    output_dir, first = Path(output_dir), None
    for shard_dir in map(Path, shard_dirs):
        info = {**read_prediction_info(shard_dir), "labels": read_label_map(shard_dir / "labels.csv")}
        first = first or info
        if (info["model_checksum"], info["labels"]) != (first["model_checksum"], first["labels"]):
            raise InputError(f"{shard_dir}: predicted by another model than {shard_dirs[0]}")
    rows = gather_shards(shard_dirs, output_dir, read_manifest, _written_files)
    labels = first.pop("labels")
    info = {**{k: v for k, v in first.items() if k not in ("files", "ok", "skipped")}, **status_counts(rows)}
    write_prediction_folder(output_dir, labels, rows, info)
    say(f"{output_dir}: {info['ok']} images predicted, {info['skipped']} files skipped "
        f"(reasons in {output_dir / 'manifest.csv'})")
    return info


def _written_files(shard_dir: Path, row: dict) -> list[str]:
    """A predicted image's mask, and its overlay where one was drawn."""
    return [f"{sub}/{row['mask']}" for sub in ("masks", "overlays") if (shard_dir / sub / row["mask"]).exists()]


def read_prediction_info(prediction_dir: Path) -> dict:
    return read_json(Path(prediction_dir) / INFO_FILE, f"a {INFO_FILE} of `cocoseg predict`",
                     ("model", "model_checksum", "variant", "seed", "files", "ok", "skipped"))
