"""Prediction on folders of new images: every file predicted or skipped with its reason, shards
joined to the same bytes as one run, and `best` turned into a run."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import demo_splits, mixed_image_folder, save_image
from PIL import Image

from cocoseg.cli import main
from cocoseg.deploy.predict import found_files, gather_predictions, predict
from cocoseg.evaluation.predictor import Predictor
from cocoseg.report.best_file import chosen_run
from cocoseg.shared.errors import InputError
from cocoseg.shared.image_decoding import load_rgb
from cocoseg.shared.shards import shard_share
from cocoseg.workflow_checks import predict_problems

TRAIN = ["--epochs", "1", "--img-size", "64", "--batch-size", "3", "--workers", "1"]


@pytest.fixture(scope="module")
def model(module_tmp):
    root = demo_splits(module_tmp("prediction"))
    assert main(["train", "--data_path", str(root), "--output", str(root / "run"), *TRAIN]) == 0
    return root / "run" / "model.pt"


@pytest.fixture(scope="module")
def photos(module_tmp):
    folder = module_tmp("photos") / "photos"
    return folder, mixed_image_folder(folder)


def files_under(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file()}


@pytest.mark.slow
def test_every_file_is_predicted_or_skipped_with_its_reason(model, photos, tmp_path, capsys):
    folder, expected = photos
    assert main(["predict", "--model", str(model), "--images", str(folder), "--output", str(tmp_path / "out")]) == 0
    rows = {row["file"]: row for row in csv.DictReader(open(tmp_path / "out" / "manifest.csv"))}
    assert set(rows) == set(expected)
    predictor = Predictor(model, "cpu")
    for name, fault in expected.items():
        row = rows[name]
        if fault:
            assert row["status"] == "skipped" and row["reason"].startswith(fault), row
            assert not (tmp_path / "out" / "masks" / Path(name).with_suffix(".png")).exists() or name == "twin.png"
            continue
        image = load_rgb(folder / name)
        mask = np.asarray(Image.open(tmp_path / "out" / "masks" / row["mask"]))
        assert row["status"] == "ok" and mask.shape == image.shape[:2]
        assert np.array_equal(mask, predictor(image))  # the model run here, on the decoded image
        assert (tmp_path / "out" / "overlays" / row["mask"]).exists()
    assert rows["deep.png"]["note"] == "I;16 pixels scaled to 0-255"
    err = capsys.readouterr().err
    assert "6 images written, 5 skipped" in err and err.count("skipped ") == 5 + 1
    info = json.loads((tmp_path / "out" / "prediction.json").read_text())
    assert (info["files"], info["ok"], info["skipped"]) == (11, 6, 5) and info["model"] == model.as_posix()


@pytest.mark.slow
@pytest.mark.parametrize("shards", [2, 13])
def test_shards_gathered_give_the_bytes_of_one_run(model, photos, tmp_path, shards):
    folder, _ = photos
    predict(model, folder, tmp_path / "whole")
    parts = [tmp_path / "shards" / str(shard) for shard in range(shards)]
    for shard, part in enumerate(parts):
        predict(model, folder, part, shard=shard, shards=shards)
    gather_predictions(parts, tmp_path / "gathered")
    whole, gathered = files_under(tmp_path / "whole"), files_under(tmp_path / "gathered")
    assert sorted(whole) == sorted(gathered) and whole == gathered


def test_shares_cover_every_file_once_in_order():
    items = list(range(11))
    for shards in (1, 2, 3, 11, 12):
        shares = [shard_share(items, shard, shards) for shard in range(shards)]
        assert sum(shares, []) == items and max(map(len, shares)) - min(map(len, shares)) <= 1
    with pytest.raises(InputError, match="shard 3: must be at least 0 and below the shard count 3"):
        shard_share(items, 3, 3)


def test_files_are_listed_sorted_with_twins_and_non_images_marked(tmp_path):
    for name in ("b.jpg", "a.png", "a.JPG", "sub/c.tif", "readme.md", "noext"):
        save_image(tmp_path / name, 8, 8) if "." in name and not name.endswith(".md") else \
            (tmp_path / name).write_text("x")
    found = {f.file: f.fault for f in found_files(tmp_path)}
    assert list(found) == sorted(found)
    assert found == {"a.JPG": "", "a.png": "its mask would be a.png, already a.JPG's", "b.jpg": "",
                     "noext": "not an image file (suffix none)", "readme.md": "not an image file (suffix .md)",
                     "sub/c.tif": ""}


def test_a_rerun_into_the_same_folder_keeps_no_mask_of_a_removed_image(model, tmp_path):
    save_image(tmp_path / "in" / "a.jpg", 40, 30)
    save_image(tmp_path / "in" / "b.jpg", 30, 40)
    predict(model, tmp_path / "in", tmp_path / "out")
    (tmp_path / "in" / "b.jpg").unlink()
    predict(model, tmp_path / "in", tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out" / "masks").iterdir()) == ["a.png"]
    assert sorted(p.name for p in (tmp_path / "out" / "overlays").iterdir()) == ["a.png"]


def test_shards_of_another_model_are_not_joined(model, tmp_path):
    save_image(tmp_path / "in" / "a.jpg", 40, 30)
    save_image(tmp_path / "in" / "b.jpg", 30, 40)
    parts = [tmp_path / "0", tmp_path / "1"]
    for shard, part in enumerate(parts):
        predict(model, tmp_path / "in", part, shard=shard, shards=2)
    info = json.loads((parts[1] / "prediction.json").read_text())
    (parts[1] / "prediction.json").write_text(json.dumps({**info, "model_checksum": "0" * 24}))
    with pytest.raises(InputError, match="predicted by another model"):
        gather_predictions(parts, tmp_path / "out")


BEST = {"variant": "fpn-resnet18-128", "seed": 1,
        "best_seed_of": {"fpn-resnet18-128": 1, "unet-resnet18-128": 0}}


@pytest.mark.parametrize("variant, seed, run", [
    ("best", "best", ("fpn-resnet18-128", 1)),
    ("unet-resnet18-128", "best", ("unet-resnet18-128", 0)),
    ("best", 2, ("fpn-resnet18-128", 2)),
    ("unet-resnet18-128", 1, ("unet-resnet18-128", 1)),
])
def test_best_names_the_reports_variant_and_each_variants_best_seed(variant, seed, run):
    assert chosen_run(BEST, variant, seed) == run


def test_a_variant_the_report_did_not_compare_is_refused():
    with pytest.raises(InputError, match="'deeplab' is not a variant the report compared"):
        chosen_run(BEST, "deeplab", "best")


def test_predict_settings_are_checked_before_any_job(tmp_path):
    block = {"variant": "unet", "seed": 7, "folders": {"here": str(tmp_path), "ok": str(tmp_path / "results" / "x")}}
    problems = predict_problems(block, ["fpn", "deeplab"], ["0", "1"], results=str(tmp_path / "results"))
    assert problems == [
        "config predict.variant: 'unet' is not best or a variant of this config (fpn, deeplab)",
        "config predict.seed: 7 is not best or one of train.seeds (0, 1)",
        f"config predict.folders.here: {tmp_path} holds {tmp_path / 'results'}/, where predictions are written"]


def test_the_command_predicts_with_the_run_best_json_names(model, tmp_path, capsys):
    for variant, seed in (("fpn-resnet18-128", 1), ("unet-resnet18-128", 0)):
        run = tmp_path / "results" / "models" / variant / f"seed-{seed}"
        run.mkdir(parents=True)
        (run / "model.pt").symlink_to(model)
    (tmp_path / "best.json").write_text(json.dumps({**BEST, "results": str(tmp_path / "results")}))
    save_image(tmp_path / "in" / "a.jpg", 40, 30)
    base = ["predict", "--images", str(tmp_path / "in"), "--best", str(tmp_path / "best.json")]
    for extra, run in (([], "fpn-resnet18-128/seed-1"), (["--variant", "unet-resnet18-128"], "unet-resnet18-128/seed-0")):
        assert main([*base, *extra, "--output", str(tmp_path / run)]) == 0
        info = json.loads((tmp_path / run / "prediction.json").read_text())
        assert info["model"] == (tmp_path / "results" / "models" / run / "model.pt").as_posix()
    capsys.readouterr()
    assert main(["predict", "--model", str(model), "--seed", "2", "--images", str(tmp_path / "in"),
                 "--output", str(tmp_path / "x")]) == 2
    assert "--variant and --seed choose a run of a report's --best" in capsys.readouterr().err
