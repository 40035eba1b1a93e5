"""The files of one evaluation: `metrics.json` (the scores over a split or its holdout, how it was
scored, speed and memory), `per_class.csv` and `confusion.csv`. Written by evaluation; read by
the report and the top-two pictures.

Torch-free: the report's environment reads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cocoseg.shared.errors import InputError
from cocoseg.shared.files import read_csv, read_json, write_csv, write_json

METRICS_FILE = "metrics.json"
KEYS = ("miou",)  # always written; what the report ranks by
PER_CLASS_FILE, CONFUSION_FILE = "per_class.csv", "confusion.csv"
PER_CLASS_COLUMNS = ["label", "category_id", "name", "iou", "dice", "label_pixels", "predicted_pixels"]


def write_metrics(output_dir: Path, metrics: dict) -> None:
    write_json(Path(output_dir) / METRICS_FILE, metrics)


def read_metrics(path: Path) -> dict:
    """An evaluation's metrics, or one line naming the file and what is wrong with it."""
    return read_json(path, "a metrics.json of `cocoseg evaluate`", KEYS)


def _round(value: float) -> float | str:
    return "" if np.isnan(value) else round(float(value), 6)


def write_tables(output_dir: Path, labels: list[dict], result: dict, confusion: np.ndarray) -> None:
    """per_class.csv (IoU, Dice and pixel counts of each label) and confusion.csv (labelled label
    by row, predicted label by column) of `metrics.scores`' result."""
    per_class = [[label["label"], label["category_id"], label["name"], _round(result["iou"][i]),
                  _round(result["dice"][i]), int(result["labelled_pixels"][i]), int(result["predicted_pixels"][i])]
                 for i, label in enumerate(labels)]
    write_csv(Path(output_dir) / PER_CLASS_FILE, PER_CLASS_COLUMNS, per_class)
    write_csv(Path(output_dir) / CONFUSION_FILE, ["label", *range(len(labels))],
              [[i, *confusion[i].tolist()] for i in range(len(labels))])


def read_per_class(path: Path) -> list[dict]:
    return read_csv(path, "a per_class.csv of `cocoseg evaluate`", PER_CLASS_COLUMNS)


def read_confusion(path: Path) -> np.ndarray:
    """The confusion matrix (labelled x predicted), or one line naming the file's fault."""
    rows = read_csv(path, "a confusion.csv of `cocoseg evaluate`", ["label"])
    try:
        matrix = np.array([[int(value) for key, value in row.items() if key != "label"] for row in rows],
                          dtype=np.int64).reshape(len(rows), -1)
    except ValueError:
        raise InputError(f"{path}: not a confusion.csv of `cocoseg evaluate` (counts that are not whole numbers)"
                         ) from None
    if matrix.shape[0] != matrix.shape[1]:
        raise InputError(f"{path}: not a confusion.csv of `cocoseg evaluate` ({matrix.shape[0]} rows, "
                         f"{matrix.shape[1]} columns)")
    return matrix
