"""Exporting a trained model: ONNX and TorchScript files that predict as PyTorch does."""

import json

import numpy as np
import onnxruntime
import pytest
import torch
from conftest import demo_splits

from cocoseg.cli import main
from cocoseg.masks.split_folder import read_labels
from cocoseg.training.model_file import load_trained
from cocoseg.training.train import train
from cocoseg.training.transforms import normalize
from cocoseg.training.variants import Variant


@pytest.fixture(scope="module")
def data(module_tmp):
    return demo_splits(module_tmp("data"))


@pytest.fixture(scope="module")
def model(data, module_tmp):
    out = module_tmp("fpn")
    variant = Variant(architecture="FPN", encoder="resnet18", image_size=(64, 96), epochs=1, batch_size=4, seed=3)
    train(variant, data / "train", data / "val", out, out / "checkpoints", out / "logs", cpus=1)
    return out / "model.pt"


def pytorch_logits(model_path, images: np.ndarray) -> np.ndarray:
    """What evaluation computes before resizing back: the model on normalised images."""
    network = load_trained(model_path)[0]
    with torch.inference_mode():
        return network(normalize(torch.from_numpy(images))).float().numpy()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_the_export_predicts_as_pytorch_at_any_batch_and_size(model, data, tmp_path, capsys, fmt):
    assert main(["export", "--model", str(model), "--format", fmt, "--output", str(tmp_path / "out"),
                 "--check-split", str(data / "val"), "--check-images", "3"]) == 0
    summary = json.loads((tmp_path / "out" / "export.json").read_text())
    assert summary["check"]["argmax_agreement"] >= 0.999
    # each check image alone at its inference shape: short side 64 (the variant's), padded to multiples of 32
    images = summary["check"]["batches"][:3]
    assert all(batch[:2] == [1, 3] and min(batch[2:]) == 64 and all(side % 32 == 0 for side in batch[2:])
               for batch in images) and len(summary["check"]["batches"]) == 4
    assert "multiples of 32" in summary["input"] and summary["scale"].startswith("short side to 64 px")
    assert read_labels(tmp_path / "out") == load_trained(model)[2]
    # a batch and size the export never saw, against PyTorch computed here
    images = np.random.default_rng(0).integers(0, 256, size=(3, 96, 128, 3), dtype=np.uint8)
    expected = pytorch_logits(model, images)
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).float().contiguous()
    if fmt == "onnx":
        session = onnxruntime.InferenceSession(str(tmp_path / "out" / "model.onnx"), providers=["CPUExecutionProvider"])
        got = session.run(None, {"images": batch.numpy()})[0]
    else:
        got = torch.jit.load(str(tmp_path / "out" / "model.torchscript.pt"))(batch).detach().numpy()
    assert got.shape == expected.shape == (3, 6, 96, 128)
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.999 and np.abs(got - expected).max() < 1e-3
    assert f"{summary['file']}: fpn-resnet18-64x96 seed 3; predicts" in capsys.readouterr().err


def test_export_of_a_reports_winner_reads_its_best_json(model, tmp_path, capsys):
    run = tmp_path / "results" / "models" / "fpn-resnet18-64x96" / "seed-3" / "model.pt"
    run.parent.mkdir(parents=True)
    run.symlink_to(model)
    best = tmp_path / "best.json"
    best.write_text(json.dumps({"variant": "fpn-resnet18-64x96", "seed": 3, "best_seed_of": {"fpn-resnet18-64x96": 3},
                                "results": str(tmp_path / "results")}))
    assert main(["export", "--best", str(best), "--format", "torchscript",
                 "--output", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "export.json").read_text())["source"] == str(run)
    best.write_text(json.dumps({"model": str(model), "variant": "fpn-resnet18-64x96", "seed": 3}))  # older format
    capsys.readouterr()
    assert main(["export", "--best", str(best), "--format", "torchscript", "--output", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a winner file of this version (no best_seed_of, results)" in err


def test_a_file_that_is_not_a_model_gives_one_line(tmp_path, capsys):
    (tmp_path / "model.pt").write_bytes(b"not a model")
    assert main(["export", "--model", str(tmp_path / "model.pt"), "--format", "onnx",
                 "--output", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "model.pt") in err and "Traceback" not in err


def test_an_output_under_a_file_gives_one_line(model, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["export", "--model", str(model), "--format", "onnx", "--output", str(tmp_path / "file" / "out")]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "file" in err and "Traceback" not in err


def test_an_exporter_failure_names_the_architecture_in_one_line(model, tmp_path, capsys, monkeypatch):
    from cocoseg.deploy import export

    def cannot_trace(*args):
        raise RuntimeError("Could not guard on data-dependent expression\nmore detail")

    monkeypatch.setattr(export, "_save", cannot_trace)
    assert main(["export", "--model", str(model), "--format", "onnx", "--output", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "FPN with resnet18 does not export to onnx (Could not guard" in err
    assert not (tmp_path / "out" / "export.json").exists()
