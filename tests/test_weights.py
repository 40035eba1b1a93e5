"""Encoder weights from a local file, fetched names, and every way such a file can be wrong."""

import os
import subprocess
import sys

import pytest
import torch
from conftest import CodeOnLoad
from test_bad_input import one_line_error
from test_workflow import TEST_CONFIG, snakemake, workflow_copy

from cocoseg.cli import main
from cocoseg.training.module import SegmentationModule
from cocoseg.training.network import build_model
from cocoseg.training.variants import Variant


@pytest.fixture(scope="module")
def resnet18_file(module_tmp):
    path = module_tmp("weights") / "resnet18-encoder.pt"
    torch.manual_seed(3)
    torch.save(build_model("DeepLabV3Plus", "resnet18", None, 2).encoder.state_dict(), path)
    return path


def test_a_local_file_is_what_the_encoder_starts_from(resnet18_file):
    saved = torch.load(resnet18_file, weights_only=True)
    module = SegmentationModule(Variant(encoder="resnet18", encoder_weights=str(resnet18_file),
                                        channels_last=False), 6)
    loaded = module.model.encoder.state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)


def test_the_weights_command_checks_a_file_and_writes_one_that_loads(resnet18_file, tmp_path):
    out = tmp_path / "results" / "weights" / "resnet18.pt"
    assert main(["weights", "--encoder", "resnet18", "--weights", str(resnet18_file), "--output", str(out)]) == 0
    saved, written = torch.load(resnet18_file, weights_only=True), torch.load(out, weights_only=True)
    assert all(torch.equal(saved[k], written[k]) for k in saved)


def test_bad_weights_files_give_one_line(resnet18_file, tmp_path, capsys):
    def check(weights, fault, encoder="resnet18"):
        assert main(["weights", "--encoder", encoder, "--weights", str(weights), "--output",
                     str(tmp_path / "out.pt")]) == 2
        one_line_error(capsys, weights, fault)
        assert not (tmp_path / "out.pt").exists()

    check(tmp_path / "missing.pt", "encoder weights file not found")
    (tmp_path / "notes.pt").write_text("not weights\n")
    check(tmp_path / "notes.pt", "not a state dict saved by torch.save")
    torch.save({"epochs": 3}, tmp_path / "plain.pt")
    check(tmp_path / "plain.pt", "not a state dict of tensors")
    check(resnet18_file, "does not fit the mobilenet_v2 encoder", encoder="mobilenet_v2")
    torch.save({"weight": CodeOnLoad(tmp_path / "exploited")}, tmp_path / "exploit.pt")
    check(tmp_path / "exploit.pt", "not a state dict saved by torch.save")
    assert not (tmp_path / "exploited").exists()


@pytest.mark.slow
def test_weights_that_cannot_be_fetched_say_how_to_give_a_file(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "TORCH_HOME": str(tmp_path / "t")}
    result = subprocess.run([sys.executable, "-m", "cocoseg", "weights", "--encoder", "resnet18", "--weights",
                             "imagenet", "--output", str(tmp_path / "w.pt")], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("cocoseg: error:")]
    assert len(lines) == 1 and "encoder weights 'imagenet' for resnet18: cannot be fetched" in lines[0]
    assert "set model.encoder_weights to a file" in lines[0]


@pytest.mark.slow
def test_the_workflow_fetches_only_when_weights_are_set(resnet18_file, tmp_path):
    workdir = workflow_copy(tmp_path)
    plain = snakemake(workdir, "-n", "--configfile", str(TEST_CONFIG))
    assert plain.returncode == 0 and "encoder_weights" not in plain.stdout
    with_file = tmp_path / "weights.yaml"
    with_file.write_text(f"model:\n  encoder_weights: {resnet18_file}\n")
    planned = snakemake(workdir, "-n", "-p", "--configfile", str(TEST_CONFIG), str(with_file))
    assert planned.returncode == 0, planned.stderr[-2000:]
    assert "rule encoder_weights" in planned.stdout or "localrule encoder_weights" in planned.stdout
    assert "--encoder-weights results/weights/resnet18.pt" in planned.stdout
    missing = tmp_path / "missing.yaml"
    missing.write_text(f"model:\n  encoder_weights: {tmp_path / 'nope.pt'}\n")
    refused = snakemake(workdir, "-n", "--configfile", str(TEST_CONFIG), str(missing))
    assert refused.returncode != 0
    assert f"config model.encoder_weights: {tmp_path / 'nope.pt'} does not exist" in refused.stdout + refused.stderr


@pytest.mark.slow
def test_weights_of_an_encoder_deeplabv3plus_cannot_dilate_pass_for_a_unet_grid(tmp_path):
    """SMP's VGG encoders cannot be dilated, so no DeepLabV3+ is built with them; a Unet grid's
    weights are checked on the encoder alone and load into the Unet it trains."""
    import segmentation_models_pytorch as smp

    with pytest.raises(Exception):
        build_model("DeepLabV3Plus", "vgg11", None, 2)
    torch.manual_seed(4)
    source = tmp_path / "vgg11-encoder.pt"
    torch.save(smp.encoders.get_encoder("vgg11").state_dict(), source)
    out = tmp_path / "results" / "weights" / "vgg11.pt"
    assert main(["weights", "--encoder", "vgg11", "--weights", str(source), "--output", str(out)]) == 0
    unet = build_model("Unet", "vgg11", str(out), 3)
    saved = torch.load(source, weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in unet.encoder.state_dict().items())
