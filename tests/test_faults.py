"""Faults users meet after the first run: files that go bad, odd images, a crash, a wrong path."""

import json
import shutil

import numpy as np
import pytest
from conftest import save_image
from PIL import Image
from test_bad_input import one_line_error, run_masks

from cocoseg.cli import main
from cocoseg.masks.convert import convert
from cocoseg.masks.demo import make_demo
from cocoseg.shared.image_checks import image_fault
from cocoseg.shared.image_decoding import load_rgb

TRAIN = ["--epochs", "1", "--img-size", "64", "--batch-size", "3", "--workers", "1"]  # 9 images: all read


@pytest.fixture(scope="module")
def data(module_tmp):
    root = module_tmp("faults")
    make_demo(root / "demo", {"train": 9, "val": 5}, seed=4)
    for split in ("train", "val"):
        convert(root / "demo" / "annotations" / f"{split}.json", root / "demo" / "images" / split, root / split,
                link_mode="copy")
    return root


@pytest.fixture(scope="module")
def model(data, module_tmp):
    out = module_tmp("model")
    assert main(["train", "--data_path", str(data), "--output", str(out), *TRAIN]) == 0
    return out / "model.pt"


def damaged_copy(data, tmp_path, split, fault):
    """A copy of the two splits with one file of `split` gone bad after the mask stage."""
    for name in ("train", "val"):
        shutil.copytree(data / name, tmp_path / name)
    masks = sorted((tmp_path / split / "masks").iterdir())
    images = sorted((tmp_path / split / "images").iterdir())
    if fault == "deleted mask":
        masks[1].unlink()
        return masks[1]
    if fault == "truncated image":
        images[2].write_bytes(images[2].read_bytes()[:200])
        return images[2]
    if fault == "deleted image":
        images[0].unlink()
        return images[0]
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(masks[0])  # a mask of another size
    return masks[0]


@pytest.mark.parametrize("fault, words", [("deleted mask", "missing"), ("truncated image", "unreadable"),
                                          ("deleted image", "missing"), ("resized mask", "differs from the manifest")])
def test_training_stops_with_one_line_naming_a_file_gone_bad(data, tmp_path, capsys, fault, words):
    bad = damaged_copy(data, tmp_path, "train", fault)
    assert main(["train", "--data_path", str(tmp_path), "--output", str(tmp_path / "out"), *TRAIN]) == 2
    one_line_error(capsys, tmp_path / "train", f"{bad.relative_to(tmp_path / 'train')}: {words}")


@pytest.mark.parametrize("fault, words", [("deleted mask", "missing"), ("truncated image", "unreadable")])
def test_evaluation_never_drops_an_image_silently(data, model, tmp_path, capsys, fault, words):
    bad = damaged_copy(data, tmp_path, "val", fault)
    assert main(["evaluate", "--model", str(model), "--split-dir", str(tmp_path / "val"),
                 "--output", str(tmp_path / "eval")]) == 2
    one_line_error(capsys, tmp_path / "val", f"{bad.relative_to(tmp_path / 'val')}: {words}")
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    ramp = (np.arange(64 * 32, dtype=np.uint32).reshape(32, 64) * 31).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    rgb = load_rgb(tmp_path / "deep.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (32, 64, 3)
    assert np.array_equal(rgb[..., 0], (ramp.astype(np.float64) / 257).round().astype(np.uint8))
    assert (rgb == 255).mean() < 0.01
    assert image_fault(tmp_path / "deep.png", 64, 32) is None


def test_an_image_above_the_pixel_limit_is_skipped_and_counted(model, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COCOSEG_MAX_PIXELS", "5000")
    save_image(tmp_path / "in" / "small.jpg", 50, 40)
    save_image(tmp_path / "in" / "huge.png", 100, 80)
    assert main(["predict", "--checkpoint", str(model), "--images", str(tmp_path / "in"),
                 "--output", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "huge.png: image too large: 8000 pixels, above the limit of 5000" in err
    assert "1 image written, 1 skipped" in err
    assert (tmp_path / "out" / "masks" / "small.png").exists() and not (tmp_path / "out" / "masks" / "huge.png").exists()


def test_the_mask_stage_skips_an_image_above_the_pixel_limit(coco_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("COCOSEG_MAX_PIXELS", "300")
    images = [{"id": 1, "file_name": "a.jpg", "width": 20, "height": 10},
              {"id": 2, "file_name": "b.jpg", "width": 30, "height": 20}]
    annotations, image_dir = coco_dir(images, [])
    assert run_masks(annotations, image_dir, tmp_path / "out") == 0
    rows = {r["image_id"]: r for r in __import__("csv").DictReader(open(tmp_path / "out" / "manifest.csv"))}
    assert rows["1"]["status"] == "ok"
    assert rows["2"]["status"] == "skipped" and "600 pixels, above the limit of 300" in rows["2"]["reason"]


def test_a_file_without_categories_stops_with_one_line(coco_dir, tmp_path, capsys):
    annotations, image_dir = coco_dir([{"id": 1, "file_name": "a.jpg", "width": 20, "height": 10}], [],
                                      categories=[])
    assert run_masks(annotations, image_dir, tmp_path / "out") == 2
    one_line_error(capsys, annotations, "no categories")


def test_a_batch_larger_than_the_training_split_is_said_once(data, tmp_path, capfd):
    args = ["train", "--data_path", str(data), "--output", str(tmp_path), *TRAIN, "--batch-size", "32"]
    assert main(args) == 0
    err = capfd.readouterr().err
    assert err.count("batch size 32 is larger than the 9 training images") == 1
    assert json.loads((tmp_path / "summary.json").read_text())["epochs"] == 1
