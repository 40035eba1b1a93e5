"""Every file one stage writes and a later stage reads has one reader, and a missing, truncated or
foreign file gives one line naming the file and its fault: never a library's traceback, never
numpy's or torch's advice to load a file unsafely."""

from pathlib import Path

import numpy as np
import pytest
from conftest import demo_splits

from cocoseg.deploy.predict import gather_predictions, write_prediction_folder
from cocoseg.evaluation.metrics_file import (
    CONFUSION_FILE,
    METRICS_FILE,
    PER_CLASS_FILE,
    read_confusion,
    read_metrics,
    read_per_class,
    write_metrics,
    write_tables,
)
from cocoseg.evaluation.per_image import FILE_NAME, read_per_image, write_per_image
from cocoseg.masks.split_folder import read_labels, read_manifest, read_split_summary
from cocoseg.report.best_file import read_best, write_best
from cocoseg.shared.errors import InputError
from cocoseg.shared.metrics import scores
from cocoseg.training.model_file import load_trained, save_model
from cocoseg.training.network import build_model
from cocoseg.training.summary_file import SUMMARY_FILE, read_summary, write_summary
from cocoseg.training.variants import Variant

LABELS = [{"label": "0", "category_id": "", "name": "background"}, {"label": "1", "category_id": "3", "name": "cat"}]


@pytest.fixture(scope="module")
def written(module_tmp) -> dict[str, tuple[Path, object]]:
    """Each file format, written by its writer: name -> (file, the reader's call on it)."""
    root = module_tmp("readers")
    split = demo_splits(root) / "train"
    run = root / "run"
    run.mkdir()
    variant = Variant(architecture="FPN")
    state = build_model(variant.architecture, variant.encoder, None, len(LABELS)).state_dict()
    save_model(run / "model.pt", variant, LABELS, state, 0, state, 0)
    write_summary(run, {"variant": "v", "seed": 0, "config": Variant().to_dict(), "epochs": 1, "best_epoch": 0,
                        "train_seconds": 1.0, "history": []})
    confusion = np.array([[5, 1], [2, 7]])
    write_metrics(run, {"variant": "v", "seed": 0, "split": "val", "subset": "all", "images": 2, "miou": 0.5,
                        "mdice": 0.6, "pixel_accuracy": 0.8, "inference": {"mode": "whole"}})
    write_tables(run, LABELS, scores(confusion), confusion)
    counts = [(np.array([3, 4]), np.array([4, 5]), np.array([3, 6])), (np.array([2, 3]), np.array([2, 4]),
                                                                        np.array([4, 2]))]
    write_per_image(run / FILE_NAME, [1, 2], ["a.jpg", "b.jpg"], counts)
    write_best(run / "best.json", {"variant": "v", "best_seed_of": {"v": 0}, "results": str(root)})
    shard = root / "shard"
    write_prediction_folder(shard, LABELS, [{"file": "a.jpg", "status": "skipped", "reason": "unreadable",
                                             "note": "", "width": "", "height": "", "mask": "",
                                             "mask_checksum": ""}],
                            {"model": "m", "model_checksum": "c", "variant": "v", "seed": 0, "files": 1, "ok": 0,
                             "skipped": 1})
    return {
        "split manifest.csv": (split / "manifest.csv", lambda: read_manifest(split)),
        "split labels.csv": (split / "labels.csv", lambda: read_labels(split)),
        "split summary.json": (split / "summary.json", lambda: read_split_summary(split)),
        "model.pt": (run / "model.pt", lambda: load_trained(run / "model.pt")),
        "summary.json": (run / SUMMARY_FILE, lambda: read_summary(run / SUMMARY_FILE)),
        "metrics.json": (run / METRICS_FILE, lambda: read_metrics(run / METRICS_FILE)),
        "per_class.csv": (run / PER_CLASS_FILE, lambda: read_per_class(run / PER_CLASS_FILE)),
        "confusion.csv": (run / CONFUSION_FILE, lambda: read_confusion(run / CONFUSION_FILE)),
        "per_image.npz": (run / FILE_NAME, lambda: read_per_image(run / FILE_NAME)),
        "best.json": (run / "best.json", lambda: read_best(run / "best.json")),
        "prediction.json": (shard / "prediction.json", lambda: gather_predictions([shard], root / "gathered")),
        "prediction manifest.csv": (shard / "manifest.csv", lambda: gather_predictions([shard], root / "gathered")),
    }


FORMATS = ["split manifest.csv", "split labels.csv", "split summary.json", "model.pt", "summary.json", "metrics.json",
           "per_class.csv", "confusion.csv", "per_image.npz", "best.json", "prediction.json", "prediction manifest.csv"]
# A file of another format in each one's place: what a mixed-up path or a copy gone wrong gives.
FOREIGN = {"split manifest.csv": "split labels.csv", "split labels.csv": "split manifest.csv",
           "split summary.json": "metrics.json", "model.pt": "summary.json", "summary.json": "metrics.json",
           "metrics.json": "summary.json", "per_class.csv": "split labels.csv", "confusion.csv": "summary.json",
           "per_image.npz": "metrics.json", "best.json": "summary.json", "prediction.json": "best.json",
           "prediction manifest.csv": "split manifest.csv"}


def truncated(data: bytes) -> bytes:
    """The file cut short in the middle of a line (a copy or a write that stopped)."""
    middle = len(data) // 2
    cut = data.find(b",", middle)
    return data[:cut if cut > 0 else middle]


def damage(path: Path, how: str, other: Path) -> None:
    if how == "missing":
        path.unlink()
    elif how == "truncated":
        path.write_bytes(truncated(path.read_bytes()))
    else:
        path.write_bytes(other.read_bytes())


@pytest.mark.parametrize("how", ["missing", "truncated", "foreign"])
@pytest.mark.parametrize("name", FORMATS)
def test_a_damaged_file_is_refused_in_one_line_naming_it(written, name, how):
    path, read = written[name]
    read()  # the file as written reads
    original = path.read_bytes()
    try:
        damage(path, how, written[FOREIGN[name]][0])
        with pytest.raises(InputError) as caught:
            read()
    finally:
        path.write_bytes(original)
    message = str(caught.value)
    assert message.startswith(f"{path}:"), message
    assert "\n" not in message, message
    assert not any(advice in message for advice in ("allow_pickle", "weights_only", "trust")), message
    assert len(message) < 300, message


def test_a_per_image_file_holding_python_objects_is_not_read(tmp_path):
    path = tmp_path / FILE_NAME
    np.savez(path, image_ids=np.array([object()], dtype=object), file_names=np.array(["a"]),
             intersection=np.zeros((1, 2)), labelled=np.zeros((1, 2)), predicted=np.zeros((1, 2)))
    with pytest.raises(InputError, match="holds Python objects, which could run code when loaded; it was not read"):
        read_per_image(path)


def test_every_written_format_is_covered(written):
    assert set(written) == set(FORMATS) == set(FOREIGN)
    assert all(written[other][0] != written[name][0] for name, other in FOREIGN.items())
