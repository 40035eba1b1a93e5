"""Training, resuming, evaluating and predicting on tiny data (random init, 64 px)."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CodeOnLoad, demo_splits, save_image
from PIL import Image

from cocoseg.cli import main
from cocoseg.evaluation.evaluate import evaluate
from cocoseg.evaluation.per_image import read_per_image
from cocoseg.masks.convert import convert
from cocoseg.masks.demo import make_demo
from cocoseg.masks.split_folder import read_manifest
from cocoseg.shared.files import checksum
from cocoseg.shared.image_decoding import load_rgb
from cocoseg.training.samples import load_mask
from cocoseg.training.train import train
from cocoseg.training.variants import Variant

pytestmark = pytest.mark.slow  # each test trains: outside the fast path (-m "not slow")

TINY = dict(encoder="resnet18", image_size=64, epochs=2, batch_size=4, lr=3e-3, seed=5)


@pytest.fixture(scope="module")
def data(module_tmp):
    return demo_splits(module_tmp("data"))


def run_train(data, out, keep_checkpoints=False, **overrides):
    variant = Variant(**{**TINY, **overrides})
    return train(variant, data / "train", data / "val", out, out / "checkpoints", out / "logs", cpus=1,
                 keep_checkpoints=keep_checkpoints)


@pytest.fixture(scope="module")
def trained(data, module_tmp):
    out = module_tmp("run")
    return out, run_train(data, out, keep_checkpoints=True)


def test_fit_writes_weights_and_a_summary(trained):
    out, summary = trained
    assert (out / "model.pt").stat().st_size > 1_000_000
    saved = json.loads((out / "summary.json").read_text())
    assert saved["epochs"] == 2 and [row["epoch"] for row in saved["history"]] == [1, 2]
    assert saved["precision"] == "32-true" and saved["device"].startswith("cpu")
    assert saved["params"] > 1_000_000 and saved["peak_memory_mb"] > 0 and saved["train_seconds"] > 0
    assert saved["train_images"] == 13 and saved["resumed_from_epoch"] == 0
    assert (out / "logs" / "csv" / "metrics.csv").exists()
    assert list((out / "logs" / "tensorboard").glob("events.out.tfevents.*"))


def test_only_the_resume_checkpoint_carries_optimiser_state(trained):
    out, _ = trained
    best = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert "optimizer_states" not in best and len(last["optimizer_states"]) == 1
    weight_bytes = sum(t.numel() * t.element_size() for t in best["state_dict"].values())
    assert (out / "checkpoints" / "best.ckpt").stat().st_size < 1.1 * weight_bytes


def test_a_finished_run_keeps_model_pt_and_removes_its_checkpoints_unless_asked(data, trained, tmp_path):
    out, kept = trained
    summary = run_train(data, tmp_path, epochs=1)
    assert not list((tmp_path / "checkpoints").glob("*.ckpt")) and (tmp_path / "model.pt").exists()
    assert summary["disk_mb"] == {"model": (tmp_path / "model.pt").stat().st_size / 2**20, "checkpoints": 0}
    checkpoints = [out / "checkpoints" / "last.ckpt", out / "checkpoints" / "best.ckpt"]
    assert kept["disk_mb"]["checkpoints"] == sum(path.stat().st_size for path in checkpoints) / 2**20
    assert kept["disk_mb"]["checkpoints"] > 3 * kept["disk_mb"]["model"] / 2  # last.ckpt: weights + AdamW's moments


def test_same_seed_gives_the_same_metrics_on_cpu(data, trained, tmp_path):
    _, first = trained
    second = run_train(data, tmp_path)
    assert [row["val_miou"] for row in second["history"]] == [row["val_miou"] for row in first["history"]]
    assert [row["train_loss"] for row in second["history"]] == [row["train_loss"] for row in first["history"]]


def test_evaluation_counts_every_original_pixel(data, trained, tmp_path):
    out, _ = trained
    metrics = evaluate(out / "model.pt", data / "val", tmp_path, samples=2)
    masks = [np.asarray(Image.open(p)) for p in sorted((data / "val" / "masks").glob("*.png"))]
    assert len({m.shape for m in masks}) > 1  # several original sizes
    import csv
    with open(tmp_path / "per_class.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6  # background + 5 demo classes
    assert sum(int(r["label_pixels"]) for r in rows) == sum(int((m != 255).sum()) for m in masks)
    assert sum(int(r["predicted_pixels"]) for r in rows) == sum(int((m != 255).sum()) for m in masks)
    assert metrics["images"] == 6 and metrics["inference_images_per_s"] > 0
    assert metrics["train_seconds"] == json.loads((out / "summary.json").read_text())["train_seconds"]
    assert metrics["params"] == json.loads((out / "summary.json").read_text())["params"]
    assert len(list((tmp_path / "samples").glob("*.png"))) == 2
    again = evaluate(out / "model.pt", data / "val", tmp_path / "again", samples=0)
    assert again["miou"] == metrics["miou"]
    evaluate(out / "model.pt", data / "val", tmp_path, samples=1)  # the same folder, fewer panels
    assert len(list((tmp_path / "samples").glob("*.png"))) == 1


def test_per_image_counts_sum_to_the_splits_metrics_and_match_each_mask(data, trained, tmp_path):
    out, _ = trained
    metrics = evaluate(out / "model.pt", data / "val", tmp_path, samples=0)
    counts = read_per_image(tmp_path / "per_image.npz")
    manifest = read_manifest(data / "val")
    assert counts.image_ids.tolist() == [int(row["image_id"]) for row in manifest]
    for row, labelled in zip(manifest, counts.labelled):
        mask = load_mask(data / "val" / "masks" / row["mask"])
        assert labelled.tolist() == np.bincount(mask[mask != 255], minlength=len(labelled)).tolist()
    assert (counts.predicted.sum(axis=1) == counts.labelled.sum(axis=1)).all()  # every labelled pixel predicted
    confusion = np.loadtxt(tmp_path / "confusion.csv", delimiter=",", skiprows=1, dtype=np.int64)[:, 1:]
    intersection, labelled, predicted = counts.confusion_sums()
    assert (intersection == np.diag(confusion)).all() and (labelled == confusion.sum(axis=1)).all()
    assert (predicted == confusion.sum(axis=0)).all()
    union = labelled + predicted - intersection
    assert np.nanmean(np.where(union > 0, intersection / np.maximum(union, 1), np.nan)) == metrics["miou"]


def test_flip_tta_scores_the_mean_of_each_image_and_its_mirror(data, trained, tmp_path):
    import cv2
    import torch.nn.functional as F

    from cocoseg.training.model_file import load_trained
    from cocoseg.training.network import input_divisor
    from cocoseg.training.samples import load_sample
    from cocoseg.training.transforms import normalize

    out, _ = trained
    metrics = evaluate(out / "model.pt", data / "val", tmp_path, samples=0, tta=("flip",))
    model, variant, labels, _ = load_trained(out / "model.pt")
    assert variant.resize == "short_side" and variant.base_short_side is None
    divisor, base = input_divisor(variant.architecture, variant.encoder), min(variant.image_size)
    n = len(labels)
    confusion = np.zeros((n, n), np.int64)
    for row in read_manifest(data / "val"):
        image, mask = load_sample(data / "val", row)
        height, width = mask.shape
        scale = min(base / min(height, width), 4 * base / max(height, width))  # short side to the base
        scaled = (round(height * scale), round(width * scale))
        image = cv2.resize(image, scaled[::-1], interpolation=cv2.INTER_LINEAR)
        padded = np.zeros((-(-scaled[0] // divisor) * divisor, -(-scaled[1] // divisor) * divisor, 3), np.uint8)
        padded[: scaled[0], : scaled[1]] = image
        batch = normalize(torch.from_numpy(padded)[None])
        with torch.inference_mode():
            logits = (model(batch) + model(batch.flip(-1)).flip(-1)) / 2
            logits = F.interpolate(logits[:, :, : scaled[0], : scaled[1]], size=mask.shape, mode="bilinear",
                                   align_corners=False)
        predicted, keep = logits.argmax(1)[0].numpy(), mask != 255
        confusion += np.bincount(mask[keep].astype(np.int64) * n + predicted[keep], minlength=n * n).reshape(n, n)
    intersection, union = np.diag(confusion), confusion.sum(0) + confusion.sum(1) - np.diag(confusion)
    expected = np.nanmean(np.where(union > 0, intersection / np.maximum(union, 1), np.nan))
    assert metrics["miou_flip"] == pytest.approx(expected, abs=1e-9)
    assert metrics["miou"] == evaluate(out / "model.pt", data / "val", tmp_path / "plain", samples=0)["miou"]
    assert "miou_flip" not in json.loads((tmp_path / "plain" / "metrics.json").read_text())


@pytest.mark.parametrize("length, window, stride", [(64, 64, 42), (100, 64, 36), (30, 64, 42), (1000, 96, 64),
                                                    (97, 32, 32)])
def test_sliding_windows_cover_every_pixel_and_end_flush(length, window, stride):
    from cocoseg.evaluation.predictor import window_starts

    starts = window_starts(length, window, stride)
    covered = np.zeros(max(length, window), bool)
    for start in starts:
        covered[start: start + window] = True
    assert covered[:length].all() and starts[0] == 0 and starts[-1] == max(length - window, 0)
    assert all(b - a <= stride for a, b in zip(starts, starts[1:]))


def test_slide_equals_whole_at_the_window_size_and_averages_overlapping_windows(trained):
    import torch

    from cocoseg.evaluation.predictor import Predictor
    from cocoseg.training.transforms import normalize

    out, _ = trained
    whole, slide = Predictor(out / "model.pt", "cpu"), Predictor(out / "model.pt", "cpu", mode="slide", stride=(36, 36))
    rng = np.random.default_rng(4)
    square = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    assert (slide(square) == whole(square)).all()
    wide = rng.integers(0, 256, size=(64, 100, 3), dtype=np.uint8)  # windows at left 0 and 36: overlap 36..63
    with torch.inference_mode():
        tensor = normalize(torch.from_numpy(wide)[None])
        left, right = slide.model(tensor[..., :64]), slide.model(tensor[..., 36:100])
    expected = torch.zeros((1, left.shape[1], 64, 100))
    expected[..., :36], expected[..., 64:] = left[..., :36], right[..., 28:]
    expected[..., 36:64] = (left[..., 36:] + right[..., :28]) / 2
    assert (slide(wide) == expected.argmax(1)[0].numpy()).all()
    assert slide(rng.integers(0, 256, size=(150, 230, 3), dtype=np.uint8)).shape == (150, 230)


def test_evaluation_by_sliding_window_scores_every_original_pixel(data, trained, tmp_path):
    out, _ = trained
    assert main(["evaluate", "--model", str(out / "model.pt"), "--split-dir", str(data / "val"), "--output",
                 str(tmp_path), "--samples", "0", "--mode", "slide", "--stride", "40"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["mode"] == "slide, stride 40x40" and 0 <= metrics["miou"] <= 1
    counts = read_per_image(tmp_path / "per_image.npz")
    labelled = sum(int((load_mask(data / "val" / "masks" / row["mask"]) != 255).sum())
                   for row in read_manifest(data / "val"))
    assert counts.predicted.sum() == counts.labelled.sum() == labelled


def test_a_model_that_always_says_background_scores_what_the_masks_imply(data, trained, tmp_path):
    """mIoU of a known prediction, from the masks' own pixel counts: background IoU is its share of
    the labelled pixels, every other class present scores 0, absent classes are left out."""
    import torch
    out, _ = trained
    saved = torch.load(out / "model.pt", weights_only=True)
    for state in (saved["state_dict"], saved["last_state_dict"]):
        bias = state["segmentation_head.0.bias"]
        state["segmentation_head.0.weight"].zero_()
        state["segmentation_head.0.bias"] = torch.tensor([1.0] + [0.0] * (len(bias) - 1))
    torch.save(saved, tmp_path / "model.pt")
    metrics = evaluate(tmp_path / "model.pt", data / "val", tmp_path / "eval", samples=0)
    pixels = np.concatenate([np.asarray(Image.open(p)).ravel() for p in (data / "val" / "masks").glob("*.png")])
    labelled = pixels[pixels != 255]
    present = np.unique(labelled)
    expected = ((labelled == 0).sum() / labelled.size) / len(present)
    assert metrics["miou"] == pytest.approx(expected, rel=1e-12)
    assert metrics["pixel_accuracy"] == pytest.approx((labelled == 0).mean(), rel=1e-12)
    assert metrics["last_epoch_miou"] == pytest.approx(expected, rel=1e-12)


def test_evaluation_metrics_do_not_depend_on_loader_workers(data, trained, tmp_path):
    out, _ = trained
    one = evaluate(out / "model.pt", data / "val", tmp_path / "one", samples=0, cpus=1)
    two = evaluate(out / "model.pt", data / "val", tmp_path / "two", samples=0, cpus=2)
    assert (one["miou"], one["last_epoch_miou"], one["pixel_accuracy"]) == \
        (two["miou"], two["last_epoch_miou"], two["pixel_accuracy"])
    assert (tmp_path / "one" / "confusion.csv").read_bytes() == (tmp_path / "two" / "confusion.csv").read_bytes()


def test_predict_on_any_folder(trained, tmp_path, capsys):
    out, _ = trained
    save_image(tmp_path / "in" / "a.jpg", 50, 40)
    save_image(tmp_path / "in" / "sub" / "b.png", 70, 30, "L")
    assert main(["predict", "--checkpoint", str(out / "model.pt"), "--images", str(tmp_path / "in"),
                 "--output", str(tmp_path / "out")]) == 0
    assert np.asarray(Image.open(tmp_path / "out" / "masks" / "a.png")).shape == (40, 50)
    assert np.asarray(Image.open(tmp_path / "out" / "masks" / "sub" / "b.png")).shape == (30, 70)
    assert (tmp_path / "out" / "overlays" / "sub" / "b.png").exists()
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(out / "model.pt"), "--images", str(tmp_path / "in"),
                 "--output", str(tmp_path / "in" / "predictions")]) == 2
    assert "a rerun would read its own output" in capsys.readouterr().err


ALIASED = {"--epochs": "1", "--lr": "0.0007", "--batch_size": "3", "--weight_decay": "0.0002",
           "--warmup_epochs": "0.5", "--crop_max_share": "0.5", "--seed": "7", "--devices": "1",
           "--encoder_weights": "none", "--img_size": "64,64"}


def test_seed_command_line_flags(data, tmp_path, capsys):
    (tmp_path / "d").mkdir()
    for split in ("train", "val"):
        os.symlink(data / split, tmp_path / "d" / split)
    args = ["train", "--data_path", str(tmp_path / "d"), "--output", str(tmp_path / "o"),
            *[word for flag, value in ALIASED.items() for word in (flag, value)]]
    assert main([*args, "--num_classes", "9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "labels.csv: 6 classes with background, but --num_classes 9" in err
    assert main([*args, "--num_classes", "6"]) == 0
    config = json.loads((tmp_path / "o" / "summary.json").read_text())["config"]
    assert config["image_size"] == [64, 64] and config["encoder_weights"] is None
    assert (config["epochs"], config["lr"], config["batch_size"], config["weight_decay"], config["warmup_epochs"],
            config["crop_max_share"], config["seed"], config["devices"]) == (1, 0.0007, 3, 0.0002, 0.5, 0.5, 7, 1)


def test_underscore_and_dashed_flags_are_the_same_option():
    from cocoseg.cli import build_parser
    parser = build_parser()
    common = ["train", "--train-dir", "t"]
    underscored = parser.parse_args([*common, *[w for f, v in ALIASED.items() for w in (f, v)], "--num_classes", "6",
                                     "--data_path", "d"])
    dashed = parser.parse_args([*common, *[w for f, v in ALIASED.items() for w in (f.replace("_", "-"), v)],
                                "--num-classes", "6", "--data-path", "d"])
    assert vars(underscored) == vars(dashed)


def test_a_run_stopped_by_a_signal_mid_epoch_resumes_there_with_the_same_optimiser_steps(data, tmp_path):
    """SIGUSR1 (a cluster's warning before its time limit): last.ckpt at the end of the batch in
    progress, exit status 75; the rerun continues that epoch at the next batch and ends with
    as many optimiser steps as a run never stopped."""
    epochs, batch = 3, 2
    command = [sys.executable, "-m", "cocoseg", "train", "--train-dir", str(data / "train"), "--val-dir",
               str(data / "val"), "--output", str(tmp_path), "--epochs", str(epochs), "--img-size", "64",
               "--batch-size", str(batch), "--workers", "2"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        if line.startswith("epoch 1/3 done"):
            process.send_signal(signal.SIGUSR1)  # early in epoch 2, of 6 batches
            break
    err = process.stderr.read()
    assert process.wait(timeout=240) == 75, err
    stopped = re.search(r"cocoseg: stopped: SIGUSR1: saved .*last.ckpt after batch (\d+) of epoch 2 \(step (\d+)\)", err)
    assert stopped, err
    assert not (tmp_path / "summary.json").exists()
    batches_per_epoch = 13 // batch
    done = int(stopped[1])
    assert 1 <= done < batches_per_epoch and int(stopped[2]) == batches_per_epoch + done
    resumed = subprocess.run(command, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming epoch 2 at batch {done + 1} of {batches_per_epoch}" in resumed.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["optimizer_steps"] == epochs * batches_per_epoch
    assert [row["epoch"] for row in summary["history"]] == [1, 2, 3]


def test_batch_of_one_is_dropped_not_crashing_batchnorm(data, tmp_path):
    # 13 training images with batch 4 leave a last batch of 1, which DeepLabV3+ cannot train on.
    summary = run_train(data, tmp_path, epochs=1, batch_size=4)
    assert summary["epochs"] == 1


def test_killed_training_resumes_from_its_last_checkpoint(data, tmp_path):
    command = [sys.executable, "-m", "cocoseg", "train", "--train-dir", str(data / "train"),
               "--val-dir", str(data / "val"), "--output", str(tmp_path), "--epochs", "4",
               "--img-size", "64", "--batch-size", "4", "--workers", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not last.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert last.exists() and not (tmp_path / "summary.json").exists()
    subprocess.run(command, check=True, capture_output=True)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["epochs"] == 4 and 1 <= summary["resumed_from_epoch"] < 4
    assert [row["epoch"] for row in summary["history"]] == [1, 2, 3, 4]
    first_run = (tmp_path / "logs" / "csv" / "metrics.csv").read_text()
    resumed = (tmp_path / "logs" / f"csv-from-epoch-{summary['resumed_from_epoch'] + 1}" / "metrics.csv").read_text()
    assert first_run.count("\n0,") >= 1 and "\n3," in resumed  # no epoch's log lost


def test_any_image_mode_loads_as_rgb(tmp_path):
    for mode in ("L", "RGBA", "CMYK", "P"):
        path = save_image(tmp_path / f"{mode}.{'jpg' if mode in ('L', 'CMYK') else 'png'}", 9, 7, mode)
        assert load_rgb(path).shape == (7, 9, 3)
    Image.fromarray(np.full((3, 4), 255, np.uint8)).save(tmp_path / "m.png")
    mask = load_mask(tmp_path / "m.png")
    mask[0, 0] = 1  # writable: torch.from_numpy needs it


def cli_train(data, out, *extra, val_dir=None):
    """`cocoseg train` in a subprocess (a multi-process run starts its other processes from the command)."""
    command = [sys.executable, "-m", "cocoseg", "train", "--train-dir", str(data / "train"),
               "--output", str(out), "--epochs", "2", "--img-size", "64", "--batch-size", "4", "--workers", "2",
               *(["--val-dir", str(val_dir)] if val_dir else []), *extra]
    return command


def weights(path):
    import torch
    return torch.load(path, weights_only=True)["state_dict"]


def test_changed_setting_retrains_from_epoch_zero_and_a_finished_run_is_restored(data, tmp_path, capfd):
    import torch
    first = run_train(data, tmp_path, epochs=1)
    first_weights = (tmp_path / "model.pt").read_bytes()
    # Snakemake removes the outputs of every job of a failed group job: the rerun restores them
    (tmp_path / "model.pt").unlink()
    (tmp_path / "summary.json").unlink()
    capfd.readouterr()
    again = run_train(data, tmp_path, epochs=1)  # same inputs
    assert "this run finished earlier with the same inputs" in capfd.readouterr().err
    assert again == json.loads(json.dumps(first)) and (tmp_path / "model.pt").read_bytes() == first_weights
    first_weights = weights(tmp_path / "model.pt")
    changed = run_train(data, tmp_path, epochs=1, lr=0.05)
    assert "training from epoch 0" in capfd.readouterr().err
    assert changed["resumed_from_epoch"] == 0 and changed["config"]["lr"] == 0.05
    assert changed["history"][0]["train_loss"] != first["history"][0]["train_loss"]
    new_weights = weights(tmp_path / "model.pt")
    assert any(not torch.equal(first_weights[k], new_weights[k]) for k in first_weights)
    assert not (tmp_path / "logs" / "csv-from-epoch-2").exists()


def test_the_reason_for_a_fresh_start_is_one_line_naming_the_change(data, tmp_path, capfd):
    run_train(data, tmp_path, epochs=1, keep_checkpoints=True)
    capfd.readouterr()
    run_train(data, tmp_path, epochs=1, lr=0.05)
    lines = [line for line in capfd.readouterr().err.splitlines() if "training from epoch 0" in line]
    assert len(lines) == 1 and "changed: settings.lr" in lines[0]


def test_changed_masks_retrain(data, tmp_path, capfd):
    copy = tmp_path / "data"
    for split in ("train", "val"):
        shutil.copytree(data / split, copy / split, symlinks=True)
    run_train(copy, tmp_path / "run", epochs=1, keep_checkpoints=True)
    manifest = (copy / "train" / "manifest.csv").read_text().splitlines()
    first = manifest[1].split(",")
    mask = copy / "train" / "masks" / first[7]
    pixels = np.array(Image.open(mask))
    pixels[:4, :4] = 1
    Image.fromarray(pixels).save(mask)
    first[8] = checksum(mask.read_bytes())
    manifest[1] = ",".join(first)
    (copy / "train" / "manifest.csv").write_text("\n".join(manifest) + "\n")
    capfd.readouterr()
    summary = run_train(copy, tmp_path / "run", epochs=1)
    assert summary["resumed_from_epoch"] == 0
    assert "changed: train_split" in capfd.readouterr().err


def test_damaged_checkpoint_is_set_aside_and_training_starts_afresh(data, tmp_path, capfd):
    run_train(data, tmp_path, epochs=1, keep_checkpoints=True)
    for finished in (tmp_path / "checkpoints").glob("finished-*"):  # as if killed before it finished
        finished.unlink()
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # a copy cut short
    capfd.readouterr()
    summary = run_train(data, tmp_path, epochs=1)
    err = capfd.readouterr().err
    assert summary["resumed_from_epoch"] == 0 and "last.ckpt is not a checkpoint of tensors and plain data" in err
    assert list((tmp_path / "checkpoints").glob("last.ckpt.damaged-*"))


@pytest.mark.parametrize("content", [b"not a model\n", b"\x80\x04K\x01."])
def test_a_file_that_is_not_a_model_gives_one_line(tmp_path, content, capsys):
    bogus = tmp_path / "model.pt"
    bogus.write_bytes(content)
    (tmp_path / "images").mkdir()
    assert main(["predict", "--checkpoint", str(bogus), "--images", str(tmp_path / "images"),
                 "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{bogus}: not a model.pt written by `cocoseg train`" in err


def test_a_model_file_that_would_run_code_is_refused(trained, tmp_path, capsys):
    import torch
    out, _ = trained
    saved = torch.load(out / "model.pt", weights_only=True)
    saved["variant"] = CodeOnLoad(tmp_path / "exploited")
    torch.save(saved, tmp_path / "model.pt")
    (tmp_path / "images").mkdir()
    assert main(["predict", "--checkpoint", str(tmp_path / "model.pt"), "--images", str(tmp_path / "images"),
                 "--output", str(tmp_path / "out")]) == 2
    assert "not a model.pt written by `cocoseg train`" in capsys.readouterr().err
    assert not (tmp_path / "exploited").exists()


@pytest.fixture(scope="module")
def holdout_data(module_tmp):
    """A 13-image train split holding 5 images out: an odd count, which two processes cannot split evenly."""
    root = module_tmp("holdout")
    make_demo(root / "demo", {"train": 13}, seed=2)
    convert(root / "demo" / "annotations" / "train.json", root / "demo" / "images" / "train", root / "train",
            holdout_count=5, holdout_seed=3)
    return root


def test_holdout_is_left_out_of_training_and_chooses_the_epoch(holdout_data, tmp_path, monkeypatch):
    """The images each loader reads, recorded as they are read, against the manifest's holdout column."""
    import csv

    from cocoseg.training import data as data_module
    read, loaders = [], {}
    get_items = {kind: kind.__getitem__ for kind in (data_module.TrainingSamples, data_module.SelectionSamples)}

    def recording_get_item(self, key):
        read.append((id(self), self.rows[key[0] if isinstance(key, tuple) else key]["file_name"]))
        return get_items[type(self)](self, key)

    for role in ("train", "val"):
        def recording_loader(self, role=role, make=getattr(data_module.SegmentationDataModule, f"{role}_dataloader")):
            loader = make(self)
            loaders[role] = id(loader.dataset)
            return loader
        monkeypatch.setattr(data_module.SegmentationDataModule, f"{role}_dataloader", recording_loader)
    for kind in get_items:
        monkeypatch.setattr(kind, "__getitem__", recording_get_item)
    variant = Variant(**{**TINY, "epochs": 1})
    summary = train(variant, holdout_data / "train", None, tmp_path, tmp_path / "c", tmp_path / "l", cpus=1)
    rows = [row for row in csv.DictReader(open(holdout_data / "train" / "manifest.csv")) if row["status"] == "ok"]
    held_out = {row["file_name"] for row in rows if row["holdout"] == "1"}
    trained_on = {name for owner, name in read if owner == loaders["train"]}
    chosen_on = {name for owner, name in read if owner == loaders["val"]}
    assert len(held_out) == 5 and not trained_on & held_out and chosen_on == held_out
    assert len(trained_on) == 8  # every other usable image (batches of 4, none dropped: 8 = 2 x 4)
    assert summary["selection"] == {"split": "train", "subset": "holdout", "images": 5}


def test_two_processes_validate_each_image_once_and_match_one_process(holdout_data, tmp_path):
    """DDP on CPU (gloo): the summed confusion matrix counts each of the 5 held-out images once."""
    import pytorch_lightning as pl
    import torch

    from cocoseg.training.data import SegmentationDataModule
    from cocoseg.training.module import SegmentationModule

    result = subprocess.run(cli_train(holdout_data, tmp_path, "--accelerator", "cpu", "--devices", "2",
                                      "--epochs", "1"), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["val_images"] == 5
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    module = SegmentationModule(Variant(**TINY), 6)
    module.model.load_state_dict(saved["state_dict"])
    data = SegmentationDataModule(holdout_data / "train", holdout_data / "train", Variant(**TINY), num_workers=0,
                                  val_subset="holdout")
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         use_distributed_sampler=False)
    one_process = trainer.validate(module, datamodule=data, verbose=False)[0]["val_miou"]
    # Lightning logs float32: the same confusion matrix gives the same float32 value, bit for bit.
    assert np.float32(one_process) == np.float32(summary["best_val_miou"])


def processes_of(marker: str) -> list[int]:
    """Live processes whose command line names `marker` (ranks and loader workers share it)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and marker in open(f"/proc/{entry}/cmdline", "rb").read().decode(errors="replace"):
                state = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[0]
                if state != "Z":  # a zombie has ended; it only waits for its parent to read its status
                    found.append(int(entry))
        except OSError:  # ended while we looked
            continue
    return found


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return any(os.getpgid(pid) == pgid for pid in processes_of(""))


def wait_until_gone(marker: str, pgid: int, seconds: float) -> float:
    start = time.time()
    while (processes_of(marker) or group_alive(pgid)) and time.time() - start < seconds:
        time.sleep(0.2)
    return time.time() - start


def start_two_processes(holdout_data, out, *extra):
    """A 3-epoch two-process run, returned once its first checkpoint is written."""
    command = cli_train(holdout_data, out, "--accelerator", "cpu", "--devices", "2", "--epochs", "3", *extra)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not last.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert last.exists() and len(processes_of(str(out))) >= 2  # both ranks (and their loader workers) running
    return command, process


def second_rank(out, first: subprocess.Popen) -> int:
    """The pid of the rank that `first` started (LOCAL_RANK=1, its child)."""
    found = [pid for pid in processes_of(str(out))
             if "LOCAL_RANK=1" in open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace")
             and open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1] == str(first.pid)]
    assert len(found) == 1
    return found[0]


def test_a_killed_two_process_run_leaves_nothing_and_resumes(holdout_data, tmp_path):
    """rank 0 killed alone (as by the out-of-memory killer): its rank 1 and every loader worker end
    with it, and the rerun resumes."""
    command, process = start_two_processes(holdout_data, tmp_path)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    waited = wait_until_gone(str(tmp_path), process.pid, 30)
    assert not processes_of(str(tmp_path)) and not group_alive(process.pid), f"left after {waited:.0f} s"
    assert not (tmp_path / "summary.json").exists()
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["epochs"] == 3 and 1 <= summary["resumed_from_epoch"] < 3
    assert [row["epoch"] for row in summary["history"]] == [1, 2, 3]


def test_when_the_second_process_dies_the_first_exits_non_zero_soon(holdout_data, tmp_path):
    _, process = start_two_processes(holdout_data, tmp_path)
    os.kill(second_rank(tmp_path, process), signal.SIGKILL)
    assert process.wait(timeout=60) != 0
    waited = wait_until_gone(str(tmp_path), process.pid, 30)
    assert not processes_of(str(tmp_path)) and not group_alive(process.pid), f"left after {waited:.0f} s"
    assert not (tmp_path / "summary.json").exists()


def test_a_process_whose_peer_stops_answering_gives_up_after_the_ddp_timeout(holdout_data, tmp_path):
    """rank 0 frozen (SIGSTOP: alive, its sockets open, so nothing tells rank 1 that it is gone):
    rank 1 fails its next collective after `--ddp-timeout-minutes` and exits non-zero, instead of
    waiting torch's default half hour."""
    _, process = start_two_processes(holdout_data, tmp_path, "--ddp-timeout-minutes", "0.25")
    try:
        rank1 = second_rank(tmp_path, process)
        os.kill(process.pid, signal.SIGSTOP)
        start = time.time()
        while rank1 in processes_of(str(tmp_path)) and time.time() - start < 120:
            time.sleep(0.2)
        assert rank1 not in processes_of(str(tmp_path)), "rank 1 still waits for its frozen peer"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_model_file_faults_are_said_in_plain_words_never_with_torchs_advice(trained, tmp_path, capsys):
    import torch
    out, _ = trained
    (tmp_path / "images").mkdir()

    def predict_with(model):
        capsys.readouterr()
        assert main(["predict", "--checkpoint", str(model), "--images", str(tmp_path / "images"),
                     "--output", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "weights_only" not in err and err.startswith(f"cocoseg: error: {model}: ")
        return err

    assert "a Lightning checkpoint of `cocoseg train`, not its model.pt" in predict_with(
        out / "checkpoints" / "last.ckpt")
    (tmp_path / "text.pt").write_text("not a model\n")
    assert "not a file written by torch.save" in predict_with(tmp_path / "text.pt")
    torch.save({"weights": CodeOnLoad(tmp_path / "exploited")}, tmp_path / "code.pt")
    assert "holds objects other than tensors and plain data" in predict_with(tmp_path / "code.pt")
    assert not (tmp_path / "exploited").exists()
    torch.save({"epochs": 3}, tmp_path / "plain.pt")
    assert "no variant settings in it" in predict_with(tmp_path / "plain.pt")


def test_a_log_file_gets_plain_progress_lines_and_no_notices(data, tmp_path, monkeypatch, capfd):
    """Output that is not a terminal (a job's log file): a line per epoch and, inside epochs, one per
    interval (here every batch); no carriage return, no advert; evaluation says its progress too."""
    import re

    from cocoseg.shared import progress
    monkeypatch.setattr(progress, "EVERY_SECONDS", 0.0)
    capfd.readouterr()
    summary = run_train(data, tmp_path, epochs=2, batch_size=4)
    err = capfd.readouterr().err
    assert "\r" not in err and "Tip:" not in err and "LeafSpec" not in err
    epochs = re.findall(r"^epoch (\d)/2 done: train loss [\d.]+, selection mIoU ([\d.]+), [\d.]+ images/s, "
                        r"elapsed \d:\d\d:\d\d, left ~\d:\d\d:\d\d$", err, flags=re.M)
    assert [int(e) for e, _ in epochs] == [1, 2]
    assert [float(m) for _, m in epochs] == pytest.approx([row["val_miou"] for row in summary["history"]], abs=1e-4)
    batches = re.findall(r"^epoch (\d)/2, batch (\d)/3: train loss [\d.]+, ", err, flags=re.M)
    assert batches == [(e, b) for e in "12" for b in "123"]  # 13 images, batches of 4, the last dropped
    evaluate(tmp_path / "model.pt", data / "val", tmp_path / "eval", samples=0)
    err = capfd.readouterr().err
    assert re.search(r"^val, chosen epoch: 6/6 images, [\d.]+ images/s", err, flags=re.M)
    assert re.search(r"^val, last epoch: 6/6 images", err, flags=re.M)


def test_a_frozen_encoder_keeps_its_initial_weights_while_the_decoder_trains(data, tmp_path):
    """The one epoch frozen: the encoder (weights and BatchNorm statistics) equals a fresh module's
    made with the same seed, the decoder has trained; class weights from the counts train too."""
    import pytorch_lightning as pl
    import torch

    from cocoseg.training.module import SegmentationModule
    variant = Variant(**{**TINY, "epochs": 1, "freeze_encoder_epochs": 1, "class_weights": "inverse_sqrt_frequency"})
    summary = train(variant, data / "train", data / "val", tmp_path, tmp_path / "c", tmp_path / "l", cpus=1)
    assert summary["config"]["freeze_encoder_epochs"] == 1
    pl.seed_everything(variant.seed, workers=True)
    initial = SegmentationModule(variant, 6).model.state_dict()
    trained = torch.load(tmp_path / "model.pt", weights_only=True)["last_state_dict"]
    encoder = [k for k in initial if k.startswith("encoder.")]
    decoder = [k for k in initial if not k.startswith("encoder.") and initial[k].is_floating_point()]
    assert all(torch.equal(initial[k], trained[k]) for k in encoder)  # weights and BatchNorm statistics
    assert any(not torch.equal(initial[k], trained[k]) for k in decoder)


def test_prediction_infers_as_the_report_scored_slide_and_flip(data, trained, tmp_path):
    """Masks predicted with best.json's record of the scored inference (slide windows, flip) give
    back, counted against the ground truth here, the mIoU evaluation reported for it."""
    from cocoseg.cli import main
    from cocoseg.report.best_file import write_best
    from cocoseg.training.samples import load_mask

    out, _ = trained
    metrics = evaluate(out / "model.pt", data / "val", tmp_path / "eval", samples=0, tta=("flip",), mode="slide",
                       stride=(40, 40))
    assert metrics["inference"]["mode"] == "slide" and metrics["inference"]["tta"] == ["flip"]
    write_best(tmp_path / "best.json", {"variant": "v", "best_seed_of": {"v": 5}, "results": str(tmp_path),
                                        "inference": metrics["inference"]})
    (tmp_path / "models" / "v" / "seed-5").mkdir(parents=True)
    (tmp_path / "models" / "v" / "seed-5" / "model.pt").symlink_to(out / "model.pt")
    assert main(["predict", "--best", str(tmp_path / "best.json"), "--images", str(data / "val" / "images"),
                 "--output", str(tmp_path / "scored"), "--no-overlays"]) == 0
    n = 6
    confusion = np.zeros((n, n), np.int64)
    for row in read_manifest(data / "val"):
        truth = load_mask(data / "val" / "masks" / row["mask"])
        predicted = load_mask(tmp_path / "scored" / "masks" / Path(row["file_name"]).with_suffix(".png"))
        keep = truth != 255
        confusion += np.bincount(truth[keep].astype(np.int64) * n + predicted[keep], minlength=n * n).reshape(n, n)
    intersection, union = np.diag(confusion), confusion.sum(0) + confusion.sum(1) - np.diag(confusion)
    miou = np.nanmean(np.where(union > 0, intersection / np.maximum(union, 1), np.nan))
    assert miou == pytest.approx(metrics["miou_flip"], abs=1e-12)
    scored = json.loads((tmp_path / "scored" / "prediction.json").read_text())["inference"]
    assert (scored["mode"], scored["stride"], scored["tta"]) == ("slide", [40, 40], ["flip"])
