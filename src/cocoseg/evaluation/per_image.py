"""Per-image pixel counts of one evaluation: `per_image.npz` beside metrics.json.

For every image of the split and every class: the pixels where label and prediction agree
(intersection), the labelled pixels and the predicted pixels, at the image's original size with
255 ignored. Summed over the images they are the split's confusion-matrix diagonal, row sums and
column sums, so any subset or resample of images can be scored without running a model again
(the report's bootstrap). Unsigned 32-bit and compressed: 5,000 images x 81 classes take about a
megabyte.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cocoseg.shared.errors import InputError, first_line
from cocoseg.shared.files import atomic_path
from cocoseg.shared.metrics import mean_iou

FILE_NAME = "per_image.npz"


@dataclass(frozen=True)
class PerImageCounts:
    image_ids: np.ndarray  # (images,)
    file_names: np.ndarray  # (images,) str
    intersection: np.ndarray  # (images, classes) int64
    labelled: np.ndarray
    predicted: np.ndarray

    @property
    def union(self) -> np.ndarray:
        return self.labelled + self.predicted - self.intersection

    def confusion_sums(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Over all images: the confusion matrix's diagonal, row sums and column sums."""
        return self.intersection.sum(axis=0), self.labelled.sum(axis=0), self.predicted.sum(axis=0)


def image_counts(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's (intersection, labelled, predicted) per class from its confusion matrix."""
    confusion = np.asarray(confusion)
    return np.diag(confusion), confusion.sum(axis=1), confusion.sum(axis=0)


def write_per_image(path: Path, image_ids: list[int], file_names: list[str],
                    counts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    """`counts`: one `image_counts` per image, in the order of `image_ids`."""
    arrays = [np.stack([c[i] for c in counts]) if counts else np.zeros((0, 0)) for i in range(3)]
    if any(a.size and a.max() >= 2**32 for a in arrays):
        raise ValueError(f"{path}: an image has 2**32 pixels or more")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, image_ids=np.asarray(image_ids, dtype=np.int64),
                            file_names=np.asarray(file_names, dtype=str),
                            intersection=arrays[0].astype(np.uint32), labelled=arrays[1].astype(np.uint32),
                            predicted=arrays[2].astype(np.uint32))


ARRAYS = ("image_ids", "file_names", "intersection", "labelled", "predicted")


def read_per_image(path: Path) -> PerImageCounts:
    """An evaluation's per-image counts, or one line naming the file and what is wrong with it
    (never numpy's advice to load a file with pickles: a file that holds them is not read)."""
    what = "a per_image.npz of `cocoseg evaluate`"
    try:
        saved = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except ValueError:  # numpy's last guess, a pickle, refused without allow_pickle
        raise InputError(f"{path}: not {what} (not an .npz archive)") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"{path}: not {what} (damaged or cut short: {first_line(e, 80)})") from None
    if not isinstance(saved, np.lib.npyio.NpzFile):
        raise InputError(f"{path}: not {what} (a single array, not an .npz archive)")
    with saved:
        if missing := [name for name in ARRAYS if name not in saved.files]:
            raise InputError(f"{path}: not {what} (no {', '.join(missing)})")
        try:
            arrays = {name: saved[name] for name in ARRAYS}
        except ValueError:  # numpy refuses object arrays without allow_pickle
            raise InputError(f"{path}: not {what} (it holds Python objects, which could run code when loaded; "
                             f"it was not read)") from None
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            raise InputError(f"{path}: not {what} (damaged: {first_line(e, 80)})") from None
    if len({len(a) for a in arrays.values()}) != 1:
        raise InputError(f"{path}: not {what} (its arrays differ in length)")
    return PerImageCounts(arrays["image_ids"], arrays["file_names"], arrays["intersection"].astype(np.int64),
                          arrays["labelled"].astype(np.int64), arrays["predicted"].astype(np.int64))


def image_miou(runs: list[PerImageCounts]) -> tuple[np.ndarray, np.ndarray]:
    """Each image's own mIoU (over the classes in its labels or predictions), mean over the
    runs (seeds): (file names, values), images in the order of their ids."""
    orders = [np.argsort(r.image_ids, kind="stable") for r in runs]
    values = [mean_iou(r.intersection.astype(float), r.union.astype(float))[o] for r, o in zip(runs, orders)]
    return runs[0].file_names[orders[0]], np.nanmean(values, axis=0)


def largest_disagreements(first: list[PerImageCounts], second: list[PerImageCounts], k: int
                          ) -> list[tuple[str, float, float]]:
    """The `k` images whose own mIoU differs most between two variants, either way:
    (file name, first's mIoU, second's mIoU), largest difference first."""
    names, a = image_miou(first)
    other_names, b = image_miou(second)
    if list(names) != list(other_names):
        raise ValueError("the two variants were scored on different images")
    difference = np.nan_to_num(np.abs(a - b), nan=-1.0)
    chosen = np.argsort(-difference, kind="stable")[:k]
    return [(str(names[i]), float(a[i]), float(b[i])) for i in chosen if difference[i] >= 0]
