"""Faults real COCO files have, through the `cocoseg masks` command a user runs."""

import csv
import json
import shutil

import numpy as np
import pytest
from conftest import ann, save_image, square
from PIL import Image

from cocoseg.cli import main

IMG = {"id": 1, "file_name": "a.jpg", "width": 20, "height": 10}
GOOD = {"id": 2, "file_name": "b.jpg", "width": 20, "height": 10}


def run_masks(annotations, images, out, *extra):
    return main(["masks", "--annotations", str(annotations), "--images", str(images),
                 "--output", str(out), *extra])


def manifest(out):
    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        return {row["image_id"]: row for row in csv.DictReader(f)}


def mask(out, name):
    return np.asarray(Image.open(out / "masks" / name))


def one_line_error(capsys, path, fault):
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith(f"cocoseg: error: {path}") and fault in err, err


@pytest.mark.parametrize("text, fault", [
    ('{"images": [], "annotations": [', "invalid JSON at line 1"),
    ("not json", "invalid JSON"),
    ("[]", "top level is not a JSON object"),
    ('{"annotations": [], "categories": []}', "key 'images' is missing"),
    ('{"images": [], "categories": []}', "key 'annotations' is missing"),
    ('{"images": [], "annotations": []}', "key 'categories' is missing"),
    ('{"images": {}, "annotations": [], "categories": []}', "'images' is not a list"),
    ('{"images": [], "annotations": [], "categories": [{"name": "x"}]}', "categories[0] has no integer 'id'"),
])
def test_unusable_json_is_one_line_naming_the_file(tmp_path, capsys, text, fault):
    path = tmp_path / "instances.json"
    path.write_text(text)
    (tmp_path / "images").mkdir()
    assert run_masks(path, tmp_path / "images", tmp_path / "out") == 2
    one_line_error(capsys, path, fault)


def test_missing_annotation_file_and_image_folder(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    assert run_masks(tmp_path / "nope.json", tmp_path / "images", tmp_path / "out") == 2
    one_line_error(capsys, tmp_path / "nope.json", "file not found")
    assert run_masks(tmp_path / "nope.json", tmp_path / "no-images", tmp_path / "out") == 2
    one_line_error(capsys, tmp_path / "no-images", "image folder not found")


def test_truncated_coco_file(tmp_path, coco_dir, capsys):
    path, images = coco_dir([IMG], [ann(1, 1, 4, [square(0, 0, 5, 5)])])
    path.write_bytes(path.read_bytes()[:-20])
    assert run_masks(path, images, tmp_path / "out") == 2
    one_line_error(capsys, path, "invalid JSON")


def test_missing_and_corrupt_images_are_skipped_and_neighbours_kept(tmp_path, coco_dir, capsys):
    imgs = [dict(IMG, id=i, file_name=f"{i}.jpg") for i in (1, 2, 3, 4)]
    anns = [ann(10 + i, i, 4, [square(0, 0, 5, 5)]) for i in (1, 2, 3, 4)]
    path, images = coco_dir(imgs, anns)
    (images / "2.jpg").unlink()
    (images / "3.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    data = (images / "4.jpg").read_bytes()
    (images / "4.jpg").write_bytes(data[: len(data) // 2])  # truncated mid-scan
    out = tmp_path / "out"
    assert run_masks(path, images, out) == 0
    rows = manifest(out)
    assert rows["1"]["status"] == "ok" and (mask(out, "1.png") == 1).sum() == 25
    assert rows["2"]["status"] == "skipped" and rows["2"]["reason"] == "image file missing"
    assert rows["3"]["reason"].startswith("image unreadable")
    assert rows["4"]["reason"].startswith("image unreadable")
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["1.png"]
    assert "4 images: 1 ok, 3 skipped" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P"])
def test_any_colour_mode_gets_a_mask(tmp_path, coco_dir, mode):
    path, images = coco_dir([IMG], [ann(1, 1, 17, [square(0, 0, 5, 5)])], make_files=False)
    suffix = ".png" if mode in ("RGBA", "P") else ".jpg"
    entry = dict(IMG, file_name=f"a{suffix}")
    path.write_text(json.dumps({"images": [entry], "annotations": [ann(1, 1, 17, [square(0, 0, 5, 5)])],
                                "categories": [{"id": 17, "name": "dog"}]}))
    save_image(images / entry["file_name"], 20, 10, mode)
    out = tmp_path / "out"
    assert run_masks(path, images, out) == 0
    assert manifest(out)["1"]["status"] == "ok"
    m = mask(out, "a.png")
    assert m.shape == (10, 20) and m.dtype == np.uint8 and (m == 1).sum() == 25


def test_polygon_faults_are_repaired_or_ignored_and_recorded(tmp_path, coco_dir):
    anns = [
        ann(1, 1, 4, [[1, 1, 5, 5]], bbox=[1, 1, 4, 4]),  # two points: no area
        ann(2, 1, 4, [[0, 0, 4, 0, 4]], bbox=[0, 0, 4, 4]),  # odd count: bbox -> ignore
        ann(3, 1, 4, [], bbox=[0, 0, 1, 1]),  # empty
        ann(4, 1, 17, [[-4, -4, 25, -4, 25, 3, -4, 3]]),  # outside and negative: clipped
    ]
    path, images = coco_dir([IMG], anns)
    out = tmp_path / "out"
    assert run_masks(path, images, out) == 0
    row = manifest(out)["1"]
    assert row["status"] == "ok"
    assert "annotation 1: dropped 1 polygon part(s)" in row["reason"]
    assert "annotation 2: polygon with an odd number of coordinates" in row["reason"]
    assert "annotation 3: empty segmentation" in row["reason"]
    m = mask(out, "a.png")
    assert (m[0:4, 0:4] == 255).all()
    assert (m[0:3, 4:] == 2).all() and (m[3:, 4:] == 0).all()


def test_unknown_category_and_unknown_image_id(tmp_path, coco_dir, capsys):
    anns = [ann(1, 1, 4, [square(0, 0, 3, 3)]), ann(2, 1, 999, [square(5, 5, 8, 8)]),
            ann(3, 77, 4, [square(0, 0, 3, 3)])]
    path, images = coco_dir([IMG], anns)
    out = tmp_path / "out"
    assert run_masks(path, images, out) == 0
    row = manifest(out)["1"]
    assert row["status"] == "ok" and "unknown category id 999" in row["reason"]
    m = mask(out, "a.png")
    assert (m == 1).sum() == 9 and (m == 255).sum() == 9
    summary = json.loads((out / "summary.json").read_text())
    assert summary["orphan_annotations"] == 1
    assert "1 annotation(s) name no usable image id" in capsys.readouterr().err


def test_duplicate_image_ids_skip_both_entries(tmp_path, coco_dir):
    imgs = [IMG, dict(IMG, file_name="c.jpg"), GOOD]
    anns = [ann(1, 1, 4, [square(0, 0, 3, 3)]), ann(2, 2, 4, [square(0, 0, 3, 3)])]
    path, images = coco_dir(imgs, anns)
    out = tmp_path / "out"
    assert run_masks(path, images, out) == 0
    with open(out / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["image_id"], r["status"]) for r in rows] == [("1", "skipped"), ("1", "skipped"), ("2", "ok")]
    assert rows[0]["reason"].startswith("duplicate image id 1")
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["b.png"]


def test_size_mismatch_with_the_json_is_skipped(tmp_path, coco_dir):
    path, images = coco_dir([IMG, GOOD], [])
    save_image(images / "a.jpg", 10, 20)
    out = tmp_path / "out"
    assert run_masks(path, images, out) == 0
    rows = manifest(out)
    assert rows["1"]["reason"] == "image is 10x20 but the JSON says 20x10"
    assert rows["2"]["status"] == "ok" and not mask(out, "b.png").any()


@pytest.mark.parametrize("name", ["../outside.jpg", "sub/../../outside.jpg", "/abs/outside.jpg", "C:/x.jpg",
                                  "a\\..\\outside.jpg", ""])
def test_file_names_that_escape_the_folder_are_never_read_or_written(tmp_path, coco_dir, name):
    path, images = coco_dir([GOOD], [])
    save_image(tmp_path / "outside.jpg", 20, 10)
    entry = dict(IMG, file_name=name)
    data = json.loads(path.read_text())
    data["images"].append(entry)
    data["annotations"].append(ann(1, 1, 4, [square(0, 0, 3, 3)]))
    path.write_text(json.dumps(data))
    out = tmp_path / "nested" / "out"
    before = sorted(tmp_path.rglob("*"))
    assert run_masks(path, images, out) == 0
    rows = manifest(out)
    assert rows["1"]["status"] == "skipped" and "unsafe or empty file_name" in rows["1"]["reason"]
    assert rows["2"]["status"] == "ok"
    written = out.parent
    assert sorted(p for p in tmp_path.rglob("*") if p != written and written not in p.parents) == before
    assert [p.name for p in (out / "images").rglob("*")] == ["b.jpg"]


def test_non_ascii_and_nested_file_names(tmp_path, coco_dir):
    imgs = [dict(IMG, file_name="crème brûlée/日本語.jpg"), dict(GOOD, file_name="Ünïcode b.jpg")]
    anns = [ann(1, 1, 90, [square(0, 0, 2, 2)]), ann(2, 2, 4, [square(0, 0, 2, 2)])]
    path, images = coco_dir(imgs, anns)
    out = tmp_path / "out"
    assert run_masks(path, images, out) == 0
    assert [r["status"] for r in manifest(out).values()] == ["ok", "ok"]
    assert (mask(out, "crème brûlée/日本語.png") == 3).sum() == 4
    assert (out / "images" / "Ünïcode b.jpg").resolve() == (images / "Ünïcode b.jpg").resolve()


def test_max_images_keeps_the_first_by_id(tmp_path, coco_dir):
    imgs = [dict(IMG, id=i, file_name=f"{i}.jpg") for i in (5, 3, 9)]
    path, images = coco_dir(imgs, [ann(1, 9, 4, [square(0, 0, 2, 2)])])
    out = tmp_path / "out"
    assert run_masks(path, images, out, "--max-images", "2") == 0
    assert list(manifest(out)) == ["3", "5"]
    assert json.loads((out / "summary.json").read_text())["orphan_annotations"] == 0


def test_rerun_replaces_the_previous_output(tmp_path, coco_dir):
    path, images = coco_dir([IMG, GOOD], [])
    out = tmp_path / "out"
    assert run_masks(path, images, out) == 0
    shutil.move(images / "b.jpg", tmp_path / "b.jpg")
    assert run_masks(path, images, out) == 0
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["a.png"]
    assert not (out / ".work").exists()


def test_jpeg_with_data_after_its_end_marker_is_kept(tmp_path, coco_dir):
    path, images = coco_dir([IMG], [ann(1, 1, 4, [square(0, 0, 5, 5)])])
    with open(images / "a.jpg", "ab") as f:
        f.write(b"trailing metadata some cameras append")
    out = tmp_path / "out"
    assert run_masks(path, images, out) == 0
    assert manifest(out)["1"]["status"] == "ok"


WEIRD = [None, True, -1, 1.5, "x", [], {}, [[]], [None], {"size": 3, "counts": 4}, [[1, 2, 3]], float("inf")]


def test_annotations_of_every_wrong_type_never_crash(tmp_path, coco_dir, capsys):
    """Each key of an annotation set to each wrong JSON type: a row per image, no traceback."""
    anns, imgs = [], []
    base = ann(0, 0, 4, [square(0, 0, 5, 5)], bbox=[0, 0, 5, 5])
    for k, key in enumerate(["image_id", "category_id", "segmentation", "iscrowd", "bbox", "id"]):
        for j, value in enumerate(WEIRD):
            image_id = 100 * k + j + 1
            imgs.append(dict(IMG, id=image_id, file_name=f"{image_id}.jpg"))
            anns.append({**base, "image_id": image_id, "id": image_id, key: value})
    anns += ["not an annotation", 7, None]
    path, images = coco_dir(imgs, anns)
    out = tmp_path / "out"
    assert run_masks(path, images, out) == 0
    rows = manifest(out)
    assert len(rows) == len(imgs)
    assert all(r["status"] == "ok" or r["reason"].startswith("annotation") for r in rows.values())
    assert "Traceback" not in capsys.readouterr().err


def test_output_that_would_overwrite_the_source_images_is_refused(tmp_path, coco_dir, capsys):
    path, images = coco_dir([IMG], [ann(1, 1, 4, [square(0, 0, 5, 5)])])  # images live in tmp_path/images
    assert run_masks(path, images, tmp_path) == 2
    one_line_error(capsys, tmp_path, "its images/ folder would hold the output, but it holds the source images")
    assert (images / "a.jpg").is_file() and not (images / "a.jpg").is_symlink()


def test_existing_folders_not_written_by_cocoseg_are_left_alone(tmp_path, coco_dir, capsys):
    path, images = coco_dir([IMG], [])
    mine = tmp_path / "out" / "masks" / "keep.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("user data")
    assert run_masks(path, images, tmp_path / "out") == 2
    one_line_error(capsys, tmp_path / "out", "has masks not written by cocoseg")
    assert mine.read_text() == "user data"


def test_every_command_lists_each_flag_once_each_with_help():
    import argparse

    from cocoseg.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    assert {"masks", "train", "evaluate", "predict", "report", "weights"} <= set(commands)
    for name, command in commands.items():
        assert command.description, name
        text = command.format_help()
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name} {action.option_strings[0]}: no help text"
            invocation = next(line for line in text.splitlines()
                              if line.split() and line.split()[0].rstrip(",") == action.option_strings[0])
            for flag in set(action.option_strings):
                assert invocation.split().count(flag) + invocation.split().count(flag + ",") == 1, (name, invocation)
