"""Paths past the demo's defaults: non-square sizes, other architectures, GPU requests, the CPU
split, the chosen epoch's record, checkpoints from elsewhere, label maps, output folders."""

import csv
import json

import numpy as np
import pytest
import torch
from conftest import CodeOnLoad, demo_splits, save_image
from PIL import Image
from test_bad_input import one_line_error

from cocoseg.cli import main
from cocoseg.evaluation.evaluate import evaluate
from cocoseg.masks.convert import convert, label_histogram
from cocoseg.masks.demo import make_demo
from cocoseg.masks.label_map import LabelRules
from cocoseg.shared import hardware as devices
from cocoseg.shared.hardware import resolve_accelerator, resolve_precision, share_cpus
from cocoseg.training.scaling import inference_size
from cocoseg.training.train import train
from cocoseg.training.transforms import TrainAugment, inference_pair
from cocoseg.training.variants import Variant

pytestmark = pytest.mark.slow  # each test trains: outside the fast path (-m "not slow")

NON_SQUARE = (64, 96)  # height, width
# (width, height): landscape, portrait, square, odd sides, a strip
SHAPES = [(160, 120), (120, 160), (128, 128), (101, 33), (33, 101), (641, 427), (427, 640), (1000, 20)]


def expected_fit(width: int, height: int, size: tuple[int, int]) -> tuple[int, int]:
    """(height, width) fitted inside `size`: the side that is relatively longer fills its bound."""
    bound_h, bound_w = size
    if width * bound_h >= height * bound_w:  # relatively wider than the bound
        return max(1, round(height * bound_w / width)), bound_w
    return bound_h, max(1, round(width * bound_h / height))


@pytest.mark.parametrize("width, height", SHAPES)
def test_every_image_shape_fits_inside_a_non_square_size_and_pads_to_it_exactly(width, height):
    image = np.full((height, width, 3), 7, np.uint8)
    mask = np.zeros((height, width), np.uint8)
    variant = Variant(image_size=NON_SQUARE, resize="fit")
    out_image, out_mask = inference_pair(image, mask, variant, divisor=16)
    assert out_image.shape == (*NON_SQUARE, 3) and out_mask.shape == NON_SQUARE
    kept = np.argwhere(out_mask != 255)  # image pixels: top-left, the rest is padding
    fitted = tuple(kept.max(axis=0) + 1)
    assert fitted == expected_fit(width, height, NON_SQUARE) == inference_size(height, width, variant)
    trained = TrainAugment(variant)(image, mask, (height, width), np.random.default_rng(0))
    assert trained[0].shape == (*NON_SQUARE, 3) and trained[1].shape == NON_SQUARE


@pytest.mark.parametrize("width, height", SHAPES)
def test_short_side_scales_every_shape_to_the_base_and_pads_only_to_the_divisor(width, height):
    image = np.full((height, width, 3), 7, np.uint8)
    mask = np.zeros((height, width), np.uint8)
    variant = Variant(image_size=NON_SQUARE)  # short_side, base 64: the variant's shorter side
    out_image, out_mask = inference_pair(image, mask, variant, divisor=16)
    scaled = tuple(np.argwhere(out_mask != 255).max(axis=0) + 1)
    if max(width, height) / min(width, height) <= 4:
        assert min(scaled) == 64  # the short side at the base length
    else:
        assert max(scaled) == 4 * 64  # a strip: the long side capped at four times the base
    assert abs(scaled[1] / scaled[0] - width / height) <= width / height * 2 / min(scaled)  # aspect kept
    assert all(side % 16 == 0 and 0 <= side - inner < 16 for side, inner in zip(out_mask.shape, scaled))
    trained = TrainAugment(variant)(image, mask, (height, width), np.random.default_rng(0))
    assert trained[0].shape == (*NON_SQUARE, 3) and trained[1].shape == NON_SQUARE


@pytest.fixture(scope="module")
def data(module_tmp):
    return demo_splits(module_tmp("data"))


def cli_train(data, out, *extra):
    return ["train", "--train-dir", str(data / "train"), "--val-dir", str(data / "val"), "--output", str(out),
            "--epochs", "2", "--batch-size", "4", "--cpus", "1", *extra]


@pytest.fixture(scope="module")
def fpn_non_square(data, module_tmp):
    out = module_tmp("fpn")
    assert main(cli_train(data, out, "--architecture", "FPN", "--img-size", "64,96", "--keep-checkpoints")) == 0
    return out


def test_a_non_square_size_trains_evaluates_and_predicts_at_each_images_own_size(data, fpn_non_square, tmp_path):
    summary = json.loads((fpn_non_square / "summary.json").read_text())
    assert summary["config"]["image_size"] == [64, 96] and summary["config"]["architecture"] == "FPN"
    sizes = {(int(r["width"]), int(r["height"])) for r in csv.DictReader(open(data / "val" / "manifest.csv"))}
    assert any(w > h for w, h in sizes) and any(w < h for w, h in sizes)  # both orientations scored
    metrics = evaluate(fpn_non_square / "model.pt", data / "val", tmp_path / "eval", samples=0)
    masks = [np.asarray(Image.open(p)) for p in sorted((data / "val" / "masks").glob("*.png"))]
    confusion = np.loadtxt(tmp_path / "eval" / "confusion.csv", delimiter=",", skiprows=1)[:, 1:]
    assert confusion.sum() == sum(int((m != 255).sum()) for m in masks) and metrics["image_size"] == [64, 96]
    for width, height in SHAPES:
        save_image(tmp_path / "in" / f"{width}x{height}.jpg", width, height)
    assert main(["predict", "--checkpoint", str(fpn_non_square / "model.pt"), "--images", str(tmp_path / "in"),
                 "--output", str(tmp_path / "out")]) == 0
    for width, height in SHAPES:
        assert np.asarray(Image.open(tmp_path / "out" / "masks" / f"{width}x{height}.png")).shape == (height, width)


def test_a_size_the_architecture_cannot_take_stops_before_training(data, tmp_path, capsys):
    assert main(cli_train(data, tmp_path / "o", "--architecture", "FPN", "--img-size", "64,80")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "64x80: each side must be a multiple of 32 for FPN with resnet18" in err
    assert not (tmp_path / "o" / "checkpoints").exists()


def test_model_pt_holds_the_chosen_checkpoints_weights_epoch_and_score(fpn_non_square):
    saved = torch.load(fpn_non_square / "model.pt", weights_only=True)
    best = torch.load(fpn_non_square / "checkpoints" / "best.ckpt", weights_only=True)
    last = torch.load(fpn_non_square / "checkpoints" / "last.ckpt", weights_only=True)
    for key, value in saved["state_dict"].items():
        assert torch.equal(value, best["state_dict"][f"model.{key}"])
    for key, value in saved["last_state_dict"].items():
        assert torch.equal(value, last["state_dict"][f"model.{key}"])
    summary = json.loads((fpn_non_square / "summary.json").read_text())
    assert saved["epoch"] == best["epoch"] + 1 == summary["best_epoch"]
    callback = next(state for key, state in last["callbacks"].items() if "'monitor': 'val_miou'" in key)
    assert summary["best_val_miou"] == pytest.approx(float(callback["best_model_score"]), abs=1e-6)
    assert saved["last_epoch"] == last["epoch"] + 1 == summary["epochs"]


def test_a_last_checkpoint_that_would_run_code_is_set_aside_running_nothing(data, fpn_non_square, tmp_path, capfd):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "fingerprint.json").write_bytes(  # the same run, so it would resume
        (fpn_non_square / "checkpoints" / "fingerprint.json").read_bytes())
    checkpoint = torch.load(fpn_non_square / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["cocoseg_history"] = CodeOnLoad(tmp_path / "exploited")
    torch.save(checkpoint, run / "checkpoints" / "last.ckpt")
    capfd.readouterr()
    assert main(cli_train(data, run, "--architecture", "FPN", "--img-size", "64,96")) == 0
    err = capfd.readouterr().err
    assert not (tmp_path / "exploited").exists()
    lines = [line for line in err.splitlines() if "training from epoch 0" in line]
    assert len(lines) == 1 and "is not a checkpoint of tensors and plain data" in lines[0]
    assert list((run / "checkpoints").glob("last.ckpt.damaged-*"))
    assert json.loads((run / "summary.json").read_text())["resumed_from_epoch"] == 0


def test_a_model_is_never_scored_against_another_label_map(data, fpn_non_square, tmp_path, capsys):
    other = tmp_path / "other"
    make_demo(other / "demo", {"val": 4}, seed=3)
    annotations = json.loads((other / "demo" / "annotations" / "val.json").read_text())
    names = [c["name"] for c in annotations["categories"]]
    convert(other / "demo" / "annotations" / "val.json", other / "demo" / "images" / "val", other / "val",
            rules=LabelRules(names[:3]))
    capsys.readouterr()
    assert main(["evaluate", "--model", str(fpn_non_square / "model.pt"), "--split-dir", str(other / "val"),
                 "--output", str(tmp_path / "eval")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(fpn_non_square / "model.pt") in err and str(other / "val" / "labels.csv") in err
    assert "label maps differ (6 labels in the model, 4 in the split)" in err
    assert not (tmp_path / "eval").exists()

    relabelled = tmp_path / "relabelled"
    (relabelled / "in").mkdir(parents=True)
    labels = (data / "val" / "labels.csv").read_text().splitlines()
    (relabelled / "out").mkdir()
    (relabelled / "out" / "labels.csv").write_text("\n".join([labels[0], labels[1], labels[3], labels[2],
                                                              *labels[4:]]) + "\n")
    assert main(["predict", "--checkpoint", str(fpn_non_square / "model.pt"), "--images", str(relabelled / "in"),
                 "--output", str(relabelled / "out")]) == 2
    err = capsys.readouterr().err
    assert "label maps differ (label 1 is 'disc' (category 3) in the model, label 2 " in err


@pytest.mark.parametrize("command", [
    ["masks", "--annotations", "{data}/demo/annotations/val.json", "--images", "{data}/demo/images/val",
     "--output", "{file}/out"],
    ["evaluate", "--model", "{file}", "--split-dir", "{data}/val", "--output", "{file}/eval"],
    ["train", "--train-dir", "{data}/train", "--output", "{file}/run"],
    ["predict", "--checkpoint", "{file}", "--images", "{data}/demo/images/val", "--output", "{file}/sub/out"],
    ["weights", "--encoder", "resnet18", "--weights", "{file}", "--output", "{file}/w.pt"],
])
def test_an_output_under_a_regular_file_is_one_line_before_any_work(data, tmp_path, capsys, command):
    regular = tmp_path / "some_file"
    regular.write_text("not a folder\n")
    args = [word.format(data=data, file=regular) for word in command]
    assert main(args) == 2
    output = args[args.index("--output") + 1]
    one_line_error(capsys, output, f"cannot be written: {regular} exists and is not a folder")


class FakeCuda:
    """torch.cuda as a node without a usable GPU shows it (or with one, `available=True`)."""

    def __init__(self, available: bool, bf16: bool = True, init_error: str = "CUDA driver initialization failed"):
        self.available, self.bf16, self.init_error = available, bf16, init_error

    def install(self, monkeypatch):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: self.available)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: self.bf16)
        monkeypatch.setattr(torch.version, "cuda", "13.0")

        def init():
            raise RuntimeError(self.init_error)
        monkeypatch.setattr(torch.cuda, "init", init)


def test_a_job_that_asked_for_a_gpu_and_got_none_stops_naming_the_node_and_cuda(monkeypatch):
    FakeCuda(available=False).install(monkeypatch)
    monkeypatch.setattr(devices.socket, "gethostname", lambda: "node17")
    with pytest.raises(devices.InputError) as error:
        resolve_accelerator("auto", gpu_requested=True)
    message = str(error.value)
    assert message.startswith("node17: a GPU was asked for") and "CUDA driver initialization failed" in message
    assert "\n" not in message
    with pytest.raises(devices.InputError):
        resolve_accelerator("gpu")
    assert resolve_accelerator("auto") == "cpu"  # nothing asked: the CPU, silently


def test_gpu_request_reaches_training_and_the_fallback_is_recorded(data, tmp_path, monkeypatch, capsys):
    FakeCuda(available=False).install(monkeypatch)
    args = ["train", "--train-dir", str(data / "train"), "--val-dir", str(data / "val"), "--output",
            str(tmp_path / "run"), "--epochs", "1", "--img-size", "64", "--batch-size", "4", "--cpus", "1", "--gpu"]
    capsys.readouterr()
    assert main(args) == 2
    assert "a GPU was asked for, but CUDA is not usable here" in capsys.readouterr().err
    assert not (tmp_path / "run" / "summary.json").exists()
    assert main([*args, "--allow-cpu-fallback"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("warning: ") and "running on the CPU" in err[0]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["accelerator"] == "cpu" and summary["device"].startswith("cpu")
    assert summary["gpu_requested"] is True and summary["config"]["gpu"] is True


def test_precision_auto_follows_the_device(monkeypatch):
    FakeCuda(available=True, bf16=True).install(monkeypatch)
    assert resolve_precision("auto", resolve_accelerator("auto", gpu_requested=True)) == "bf16-mixed"
    FakeCuda(available=True, bf16=False).install(monkeypatch)
    assert resolve_precision("auto", "gpu") == "16-mixed"
    assert resolve_precision("auto", "cpu") == "32-true"
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"  # asked for by name: kept


@pytest.mark.parametrize("cpus, processes", [(1, 1), (2, 1), (8, 1), (2, 2), (8, 2), (16, 4), (3, 2)])
def test_the_jobs_cpus_are_shared_never_oversubscribed(cpus, processes):
    for accelerator in ("cpu", "gpu"):
        share = share_cpus(cpus, processes, accelerator)
        assert share.cpus * processes <= max(cpus, processes)
        assert share.threads >= 1 and share.loader_workers >= 0
        if accelerator == "gpu":
            assert share.threads + share.loader_workers <= max(2, share.cpus)  # one drives the GPU, the rest decode
        else:  # every CPU computes; at most one loader worker beside them
            assert share.threads == share.cpus and share.loader_workers == (share.cpus > 1)


def test_training_sets_threads_and_workers_from_the_share(data, tmp_path, monkeypatch):
    seen = {}
    original = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (seen.setdefault("threads", n), original(n)))
    variant = Variant(encoder="resnet18", image_size=64, epochs=1, batch_size=4)
    summary = train(variant, data / "train", data / "val", tmp_path, tmp_path / "c", tmp_path / "l", cpus=2)
    assert seen["threads"] == 2 and summary["cpus"] == {"job": 2, "per_process": 2, "loader_workers": 1,
                                                         "threads": 2}


def test_class_pixel_counts_equal_numpys():
    rng = np.random.default_rng(0)
    for shape in [(480, 640), (1, 1), (37, 1001)]:
        mask = rng.integers(0, 256, shape).astype(np.uint8)
        assert np.array_equal(label_histogram(mask), np.bincount(mask.ravel(), minlength=256))


def test_evaluation_jobs_ask_for_one_gpu_and_training_jobs_for_their_devices(tmp_path):
    from test_workflow import TEST_CONFIG, snakemake, workflow_copy

    workdir = workflow_copy(tmp_path)
    extra = tmp_path / "gpu.yaml"
    extra.write_text("train:\n  gpu: true\n  devices: 2\n  allow_cpu_fallback: true\n")
    result = snakemake(workdir, "-n", "-p", "--configfile", str(TEST_CONFIG), str(extra))
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = result.stdout.split("\n\n")
    train_jobs = [job for job in jobs if "rule train_variant:" in job]
    eval_jobs = [job for job in jobs if "rule evaluate_variant:" in job]
    assert train_jobs and eval_jobs
    assert all("gpu=2" in job and "--gpu --allow-cpu-fallback" in job for job in train_jobs)
    assert all("gpu=1" in job and "--gpu --allow-cpu-fallback" in job for job in eval_jobs)


def test_training_refuses_a_selection_split_with_another_label_map(data, tmp_path, capsys):
    other = tmp_path / "other"
    make_demo(other / "demo", {"val": 4}, seed=3)
    names = [c["name"] for c in json.loads((other / "demo" / "annotations" / "val.json").read_text())["categories"]]
    convert(other / "demo" / "annotations" / "val.json", other / "demo" / "images" / "val", other / "val",
            rules=LabelRules([names[1], names[0], *names[2:]]))  # the same classes, two labels swapped
    capsys.readouterr()
    args = ["train", "--train-dir", str(data / "train"), "--val-dir", str(other / "val"),
            "--output", str(tmp_path / "run"), "--epochs", "1", "--img-size", "64", "--cpus", "1"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{other / 'val'}/labels.csv: differs from {data / 'train'}/labels.csv" in err
    assert "label 1 is" in err and not (tmp_path / "run" / "checkpoints").exists()
