"""Packed splits for shared file systems: the parts hold the split folder's bytes, whatever the
mask stage's shard count; samples, training and evaluation read from them (staged to a local
folder or not) give what the folder gives, to the last digit."""

import json
import shutil
import tarfile
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import COCO_REAL, demo_splits

from cocoseg.cli import main
from cocoseg.evaluation.evaluate import evaluate
from cocoseg.masks import packed as packed_module
from cocoseg.masks.convert import convert
from cocoseg.masks.packed import PACKED, PackedSplit, pack_split, stage
from cocoseg.masks.split_folder import read_manifest
from cocoseg.shared.errors import InputError
from cocoseg.training.samples import SplitFolder, read_sample
from cocoseg.training.split_sources import ReadFrom
from cocoseg.training.train import train
from cocoseg.training.variants import Variant

SMALL_PARTS_MB = 0.05  # the demo split (about 150 kB) in several parts


@pytest.fixture(scope="module")
def data(module_tmp):
    root = demo_splits(module_tmp("packed"))
    for split in ("train", "val"):
        pack_split(root / split, SMALL_PARTS_MB)
    return root


def members(part: Path) -> dict[str, bytes]:
    with tarfile.open(part) as tar:
        return {info.name: tar.extractfile(info).read() for info in tar.getmembers()}


def test_parts_hold_the_folders_bytes_whatever_the_shard_count(tmp_path):
    """Real COCO photos converted in 1 and in 3 shards: byte-identical parts, each sample's image,
    mask and manifest row in WebDataset's layout, read back with tarfile (not our reader)."""
    for shards in (1, 3):
        convert(COCO_REAL / "instances.json", COCO_REAL / "images", tmp_path / f"s{shards}", shards=shards)
        pack_split(tmp_path / f"s{shards}", part_mb=1.0)
    parts = sorted(p.name for p in (tmp_path / "s1" / PACKED).glob("*.tar"))
    assert len(parts) >= 2
    for name in parts:
        assert (tmp_path / "s1" / PACKED / name).read_bytes() == (tmp_path / "s3" / PACKED / name).read_bytes()
    held = {}
    for name in parts:
        held |= members(tmp_path / "s1" / PACKED / name)
    rows = read_manifest(tmp_path / "s1")
    assert len(held) == 3 * len(rows) == 42
    for position, row in enumerate(rows):
        key = f"{position:08d}"
        assert held[f"{key}.jpg"] == (COCO_REAL / "images" / row["file_name"]).read_bytes()
        assert held[f"{key}.png"] == (tmp_path / "s1" / "masks" / row["mask"]).read_bytes()
        assert json.loads(held[f"{key}.json"]) == row


def test_samples_from_parts_equal_the_folders(data):
    for split in ("train", "val"):
        folder, packed = SplitFolder(data / split), PackedSplit(data / split / PACKED)
        rows = read_manifest(data / split)
        packed.check(rows)
        assert len(packed.parts) >= (2 if split == "train" else 1)
        for row in rows:
            for reduce_to in (None, 40):
                for a, b in zip(read_sample(folder, row, reduce_to), read_sample(packed, row, reduce_to)):
                    assert np.array_equal(a, b) and a.dtype == b.dtype


def test_a_file_gone_before_packing_is_one_line(data, tmp_path, capsys):
    split = tmp_path / "train"
    shutil.copytree(data / "train", split, symlinks=True)
    shutil.rmtree(split / PACKED)
    gone = split / "masks" / read_manifest(split)[3]["mask"]
    gone.unlink()
    assert main(["pack", "--split-dir", str(split)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"cocoseg: error: {gone}: cannot be packed: No such file or directory (rerun the mask stage)"
    assert not (split / PACKED).exists() and not list(split.glob(f".{PACKED}*"))  # nothing half-written left


def test_a_pack_older_than_its_masks_is_refused_before_any_work(data, tmp_path):
    split = tmp_path / "train"
    shutil.copytree(data / "train", split, symlinks=True)
    rows = read_manifest(split)
    rows[0] = {**rows[0], "mask_checksum": "0" * 24}
    with pytest.raises(InputError, match=f"{rows[0]['file_name']}: packed from another mask"):
        PackedSplit(split / PACKED).check(rows)


def test_staging_checks_the_space_and_each_copy(data, tmp_path, monkeypatch):
    copy = stage(data / "train" / PACKED, tmp_path / "local")
    assert sorted(p.name for p in copy.iterdir()) == sorted(p.name for p in (data / "train" / PACKED).iterdir())
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(packed_module.shutil, "disk_usage", lambda path: Usage(10**6, 10**6 - 1000, 1000))
    with pytest.raises(InputError, match=r"needs \d+ MB, 0 MB free") as err:
        stage(data / "train" / PACKED, tmp_path / "full")
    assert str(err.value).startswith(str(tmp_path / "full") + ": staging ")
    monkeypatch.undo()
    monkeypatch.setattr(packed_module.shutil, "copyfile", lambda src, dst: Path(dst).write_bytes(b"cut"))
    with pytest.raises(InputError, match="differs from .* after copying"):
        stage(data / "train" / PACKED, tmp_path / "bad")


def test_stage_local_needs_packed_parts(capsys):
    assert main(["train", "--train-dir", "x", "--stage", "local"]) == 2
    assert "--stage local copies packed parts: give --packed too" in capsys.readouterr().err


@pytest.mark.slow
def test_training_and_evaluation_from_staged_parts_equal_the_folders(data, tmp_path):
    """The same seed on the same CPU trains the same weights from the folders and from staged
    parts, and scores the same metrics; the staged copies are gone when each job ends."""
    variant = Variant(encoder="resnet18", image_size=64, epochs=2, batch_size=4, lr=3e-3, seed=5)
    stage_dir = tmp_path / "node-local"
    runs = {}
    for name, read_from in (("folder", ReadFrom()), ("staged", ReadFrom(packed=True, stage_dir=stage_dir))):
        out = tmp_path / name
        runs[name] = train(variant, data / "train", data / "val", out, out / "checkpoints", out / "logs", cpus=1,
                           read_from=read_from)
        assert not stage_dir.exists() or not any(stage_dir.iterdir())  # the staged copy went with the job
    folder, staged = runs["folder"], runs["staged"]
    assert [r["val_miou"] for r in staged["history"]] == [r["val_miou"] for r in folder["history"]]
    assert [r["train_loss"] for r in staged["history"]] == [r["train_loss"] for r in folder["history"]]
    weights = [torch.load(tmp_path / name / "model.pt", weights_only=True)["state_dict"] for name in runs]
    assert weights[0].keys() == weights[1].keys() and all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert folder["data"] == {"read": "folder"}
    assert staged["data"]["read"] == "packed" and staged["data"]["staging"]["seconds"] > 0
    assert staged["data"]["staging"]["megabytes"] > 0.1
    scored = {name: evaluate(tmp_path / "folder" / "model.pt", data / "val", tmp_path / f"eval-{name}", samples=1,
                             read_from=read_from)
              for name, read_from in (("folder", ReadFrom()), ("packed", ReadFrom(packed=True)),
                                      ("staged", ReadFrom(packed=True, stage_dir=stage_dir)))}
    for name in ("packed", "staged"):
        for key in ("miou", "mdice", "pixel_accuracy", "last_epoch_miou"):
            assert scored[name][key] == scored["folder"][key], (name, key)
        for table in ("per_class.csv", "confusion.csv"):
            assert (tmp_path / f"eval-{name}" / table).read_bytes() == (tmp_path / "eval-folder" / table).read_bytes()
    assert not list(stage_dir.glob("*"))
