"""COCO-Stuff and COCO panoptic input: several files per split, unlabelled pixels as ignore,
ignore categories, and panoptic PNGs, on real COCO annotations (tests/data/coco-panoptic) and on
handmade cases whose pixels we know."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, ann, save_image, square
from PIL import Image
from pycocotools.coco import COCO

from cocoseg.cli import main
from cocoseg.masks.convert import convert
from cocoseg.masks.label_map import LabelRules
from cocoseg.masks.split_folder import read_labels, read_manifest_rows
from cocoseg.shared.errors import InputError

PANOPTIC = REPO / "tests" / "data" / "coco-panoptic"
IGNORE_UNLABELLED = LabelRules(unlabeled="ignore")


@pytest.fixture(scope="module")
def stand_in_images(tmp_path_factory) -> Path:
    """A plain JPEG of each image's recorded size: the photos' licences keep them out of the
    repository, and a mask depends only on the annotations and the size."""
    folder = tmp_path_factory.mktemp("images")
    for image in json.loads((PANOPTIC / "panoptic.json").read_text())["images"]:
        save_image(folder / image["file_name"], image["width"], image["height"])
    return folder


def read_mask(split: Path, file_name: str) -> np.ndarray:
    return np.asarray(Image.open(split / "masks" / Path(file_name).with_suffix(".png")))


def panoptic_painting(image_id: int, label_of: dict[int, int], void: int) -> np.ndarray:
    """Each pixel's segment id from the PNG's colour, looked up in segments_info, pixel by pixel."""
    data = json.loads((PANOPTIC / "panoptic.json").read_text())
    annotation = next(a for a in data["annotations"] if a["image_id"] == image_id)
    rgb = np.asarray(Image.open(PANOPTIC / "panoptic" / annotation["file_name"]), dtype=np.int64)
    ids = rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]
    out = np.full(ids.shape, void, np.uint8)
    for segment in annotation["segments_info"]:
        out[ids == segment["id"]] = 255 if segment["iscrowd"] else label_of[segment["category_id"]]
    return out


def instances_painting(files: list[Path], image_id: int, label_of: dict[int, int]) -> np.ndarray:
    """pycocotools' own masks of every file's annotations: classes where one non-crowd annotation
    covers a pixel, 255 where a crowd one does and none else, 255 where none does."""
    cocos = [COCO(str(f)) for f in files]
    info = cocos[0].imgs[image_id]
    out = np.full((info["height"], info["width"]), 255, np.uint8)
    for coco in cocos:
        for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id)):
            if not a["iscrowd"]:
                out[coco.annToMask(a) == 1] = label_of[a["category_id"]]
    return out


def test_instances_plus_stuff_and_panoptic_give_the_same_masks_on_real_annotations(tmp_path, stand_in_images):
    """Two real val2017 images, things and stuff from two instances-format files and the same
    segments as panoptic PNGs: each path equals an independent painting, and the two agree on
    every pixel both label; unlabelled (VOID) pixels are ignore, never a class."""
    files = [PANOPTIC / "instances.json", PANOPTIC / "stuff.json"]
    merged = convert(files, stand_in_images, tmp_path / "merged", rules=IGNORE_UNLABELLED)
    panoptic = convert(PANOPTIC / "panoptic.json", stand_in_images, tmp_path / "panoptic", rules=IGNORE_UNLABELLED,
                       panoptic_dir=PANOPTIC / "panoptic")
    assert merged["ok"] == panoptic["ok"] == 2 and merged["classes"] == panoptic["classes"] == 133
    labels = read_labels(tmp_path / "merged")
    assert labels == read_labels(tmp_path / "panoptic")
    categories = json.loads((PANOPTIC / "panoptic.json").read_text())["categories"]
    assert [int(row["label"]) for row in labels] == list(range(133))  # no background row
    label_of = {c["id"]: i for i, c in enumerate(sorted(categories, key=lambda c: c["id"]))}
    assert {int(row["category_id"]): int(row["label"]) for row in labels} == label_of
    seen = set()
    for image_id, file_name, void in ((142238, "000000142238.jpg", 2712), (439180, "000000439180.jpg", 7189)):
        from_files, from_pngs = read_mask(tmp_path / "merged", file_name), read_mask(tmp_path / "panoptic", file_name)
        assert np.array_equal(from_pngs, panoptic_painting(image_id, label_of, void=255)), file_name
        assert np.array_equal(from_files, instances_painting(files, image_id, label_of)), file_name
        both = (from_files != 255) & (from_pngs != 255)
        assert np.array_equal(from_files[both], from_pngs[both]) and both.mean() > 0.9, file_name
        assert (panoptic_painting(image_id, label_of, void=254) == 254).sum() == void  # the VOID count COCO gives
        seen |= set(np.unique(from_pngs).tolist()) - {255}
    painted = {label_of[s["category_id"]] for a in json.loads((PANOPTIC / "panoptic.json").read_text())["annotations"]
               for s in a["segments_info"] if not s["iscrowd"]}
    assert seen == painted and len(seen) == 8


def test_panoptic_void_is_background_where_asked(tmp_path, stand_in_images):
    convert(PANOPTIC / "panoptic.json", stand_in_images, tmp_path / "out", panoptic_dir=PANOPTIC / "panoptic")
    labels = read_labels(tmp_path / "out")
    assert (labels[0]["label"], labels[0]["category_id"], labels[0]["name"]) == ("0", "", "background")
    assert len(labels) == 134 and labels[1]["name"] == "person" and labels[1]["label"] == "1"
    categories = json.loads((PANOPTIC / "panoptic.json").read_text())["categories"]
    label_of = {c["id"]: i + 1 for i, c in enumerate(sorted(categories, key=lambda c: c["id"]))}
    mask = read_mask(tmp_path / "out", "000000142238.jpg")
    assert np.array_equal(mask, panoptic_painting(142238, label_of, void=0))
    assert (mask == 0).sum() == 2712


THINGS = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}]
STUFF = [{"id": 105, "name": "grass"}, {"id": 149, "name": "road"}, {"id": 183, "name": "other"}]


def write_coco(path: Path, annotations: list, categories: list, images=None) -> Path:
    images = images or [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def stuff_case(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A person (small) over grass and road; 'other' covers the person's pixels and one stray
    column no class covers; the bottom row is unlabelled."""
    save_image(tmp_path / "images" / "a.jpg", 10, 10)
    things = write_coco(tmp_path / "things.json", [ann(1, 1, 1, [square(3, 3, 6, 6)])], THINGS)
    stuff = write_coco(tmp_path / "stuff.json", [ann(10, 1, 105, [square(0, 0, 10, 5)]),  # 50 px
                                                 ann(11, 1, 149, [square(0, 5, 9, 9)]),  # 36 px
                                                 ann(12, 1, 183, [square(2, 2, 7, 7)]),
                                                 ann(13, 1, 183, [square(9, 5, 10, 9)])], STUFF)
    return things, stuff, tmp_path / "images"


def test_the_first_file_wins_where_a_thing_and_stuff_overlap(tmp_path):
    """Within one file the smaller annotation is on top; across files the first file's is, so a
    large thing stays over small stuff (COCO-Stuff's rule), and reversing the files reverses it."""
    save_image(tmp_path / "images" / "a.jpg", 10, 10)
    things = write_coco(tmp_path / "things.json", [ann(1, 1, 1, [square(0, 0, 8, 8)])], THINGS)
    stuff = write_coco(tmp_path / "stuff.json", [ann(2, 1, 105, [square(2, 2, 4, 4)])], STUFF)
    convert([things, stuff], tmp_path / "images", tmp_path / "thing-first", rules=IGNORE_UNLABELLED)
    mask = read_mask(tmp_path / "thing-first", "a.jpg")
    person, grass = 0, 2  # ids 1, 3, 105, 149, 183 -> labels 0..4
    assert (mask[:8, :8] == person).all() and (mask[8:, :] == 255).all() and (mask[:, 8:] == 255).all()
    convert([stuff, things], tmp_path / "images", tmp_path / "stuff-first", rules=IGNORE_UNLABELLED)
    mask = read_mask(tmp_path / "stuff-first", "a.jpg")
    assert (mask[2:4, 2:4] == grass).all() and (mask[:8, :8] == person).sum() == 64 - 4


def test_ignore_categories_and_unlabelled_pixels(tmp_path):
    things, stuff, images = stuff_case(tmp_path)
    rules = LabelRules(unlabeled="ignore", ignore_categories=(183,))
    summary = convert([things, stuff], images, tmp_path / "out", rules=rules)
    labels = read_labels(tmp_path / "out")
    assert [(r["label"], r["category_id"], r["name"]) for r in labels] == [
        ("0", "1", "person"), ("1", "3", "car"), ("2", "105", "grass"), ("3", "149", "road")]
    expected = np.full((10, 10), 255, np.uint8)
    expected[:5, :] = 2
    expected[5:9, :9] = 3
    expected[3:6, 3:6] = 0  # the thing wins over both stuff classes; "other" never paints over a class
    assert np.array_equal(read_mask(tmp_path / "out", "a.jpg"), expected)
    assert summary["class_pixels"] == {"person": 9, "car": 0, "grass": 50 - 6, "road": 36 - 3}
    # the same files with a background: unlabelled pixels are label 0, "other" still 255
    convert([things, stuff], images, tmp_path / "bg", rules=LabelRules(ignore_categories=(183,)))
    with_background = np.where(expected == 255, 0, expected + 1).astype(np.uint8)
    with_background[5:9, 9] = 255  # the stray "other" column, which no class covers
    assert np.array_equal(read_mask(tmp_path / "bg", "a.jpg"), with_background)
    assert read_labels(tmp_path / "bg")[0]["name"] == "background"


@pytest.mark.parametrize("second, fault", [
    ({"categories": [{"id": 3, "name": "truck"}]}, "category id 3 is 'truck', but 'car' in"),
    ({"images": [{"id": 1, "file_name": "b.jpg", "width": 10, "height": 10}]}, "image 1 is 'b.jpg' of 10x10, but 'a.jpg' of 10x10 in"),
    ({"images": [{"id": 1, "file_name": "a.jpg", "width": 12, "height": 10}]}, "image 1 is 'a.jpg' of 12x10, but 'a.jpg' of 10x10 in"),
])
def test_files_that_disagree_are_refused_naming_both(tmp_path, second, fault):
    first = write_coco(tmp_path / "first.json", [], THINGS)
    data = {"images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}], "annotations": [],
            "categories": STUFF, **second}
    (tmp_path / "second.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match=fault) as err:
        convert([first, tmp_path / "second.json"], tmp_path, tmp_path / "out")
    assert str(err.value).startswith(str(tmp_path / "second.json")) and str(first) in str(err.value)


def test_images_of_either_file_are_kept_and_an_ignore_category_must_exist(tmp_path):
    save_image(tmp_path / "images" / "a.jpg", 10, 10)
    save_image(tmp_path / "images" / "b.jpg", 10, 10)
    first = write_coco(tmp_path / "first.json", [ann(1, 1, 1, [square(0, 0, 2, 2)])], THINGS)
    second = write_coco(tmp_path / "second.json", [ann(2, 2, 105, [square(0, 0, 3, 3)])], STUFF,
                        images=[{"id": 2, "file_name": "b.jpg", "width": 10, "height": 10}])
    summary = convert([first, second], tmp_path / "images", tmp_path / "out", rules=IGNORE_UNLABELLED)
    assert summary["ok"] == 2 and summary["annotations"] == 2
    assert (read_mask(tmp_path / "out", "b.jpg") == 2).sum() == 9
    with pytest.raises(InputError, match="ignore category 7 is not among its categories"):
        convert([first, second], tmp_path / "images", tmp_path / "bad", rules=LabelRules(ignore_categories=(7,)))


def panoptic_case(tmp_path: Path, segments: list, png_ids: np.ndarray, png_size=None, images=None) -> Path:
    """One 6x8 image whose panoptic PNG holds `png_ids`."""
    save_image(tmp_path / "images" / "a.jpg", 8, 6)
    (tmp_path / "png").mkdir(exist_ok=True)
    rgb = np.stack([png_ids % 256, png_ids // 256 % 256, png_ids // 65536], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).resize(png_size or (8, 6), Image.NEAREST).save(tmp_path / "png" / "a.png")
    data = {"images": images or [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 6}],
            "annotations": [{"image_id": 1, "file_name": "a.png", "segments_info": segments}],
            "categories": [{"id": 1, "name": "person", "isthing": 1}, {"id": 105, "name": "grass", "isthing": 0}]}
    (tmp_path / "panoptic.json").write_text(json.dumps(data))
    return tmp_path / "panoptic.json"


def test_panoptic_segments_missing_on_either_side_are_noted(tmp_path):
    ids = np.zeros((6, 8), np.int64)
    ids[:3] = 1000  # grass
    ids[3:, :4] = 70000  # a person (id above 65535: all three channels used)
    ids[3:, 4:] = 5  # a colour the JSON does not list
    ids[5, 7] = 0  # VOID: background here
    segments = [{"id": 1000, "category_id": 105, "iscrowd": 0}, {"id": 70000, "category_id": 1, "iscrowd": 0},
                {"id": 42, "category_id": 1, "iscrowd": 0}]  # 42: no pixel in the PNG
    convert(panoptic_case(tmp_path, segments, ids), tmp_path / "images", tmp_path / "out",
            panoptic_dir=tmp_path / "png")
    expected = np.full((6, 8), 255, np.uint8)
    expected[:3], expected[3:, :4], expected[5, 7] = 2, 1, 0
    assert np.array_equal(read_mask(tmp_path / "out", "a.jpg"), expected)
    reason = read_manifest_rows(tmp_path / "out" / "manifest.csv")[0]["reason"]
    assert "11 pixel(s) of PNG segment id(s) 5 absent from the JSON are set to ignore (255)" in reason
    assert "segment id(s) 42 of the JSON have no pixel in the PNG" in reason


@pytest.mark.parametrize("case, reason", [
    ("missing", "panoptic PNG"),
    ("size", "panoptic PNG is 8x7 but the JSON says 8x6"),
    ("unreadable", "unreadable"),
])
def test_a_bad_panoptic_png_skips_its_image_with_the_reason(tmp_path, case, reason):
    ids = np.full((6, 8), 1000, np.int64)
    path = panoptic_case(tmp_path, [{"id": 1000, "category_id": 105, "iscrowd": 0}], ids,
                         png_size=(8, 7) if case == "size" else None)
    if case == "missing":
        (tmp_path / "png" / "a.png").unlink()
    if case == "unreadable":
        (tmp_path / "png" / "a.png").write_bytes(b"not a png")
    summary = convert(path, tmp_path / "images", tmp_path / "out", panoptic_dir=tmp_path / "png")
    row = read_manifest_rows(tmp_path / "out" / "manifest.csv")[0]
    assert summary["skipped"] == 1 and row["status"] == "skipped" and reason in row["reason"]


def test_the_masks_command_reads_several_files_and_panoptic(tmp_path, stand_in_images, capsys):
    """Several files or a panoptic file: unlabelled pixels are ignore unless told otherwise (auto)."""
    files = [str(PANOPTIC / "instances.json"), str(PANOPTIC / "stuff.json")]
    assert main(["masks", "--annotations", *files, "--images", str(stand_in_images), "--output",
                 str(tmp_path / "merged")]) == 0
    assert main(["masks", "--annotations", str(PANOPTIC / "panoptic.json"), "--panoptic-masks",
                 str(PANOPTIC / "panoptic"), "--images", str(stand_in_images), "--output", str(tmp_path / "pan")]) == 0
    assert read_labels(tmp_path / "merged") == read_labels(tmp_path / "pan")
    assert len(read_labels(tmp_path / "pan")) == 133 and (read_mask(tmp_path / "pan", "000000142238.jpg") == 255).any()
    assert main(["masks", "--annotations", files[0], "--images", str(stand_in_images), "--output",
                 str(tmp_path / "things"), "--unlabeled", "auto"]) == 0
    assert read_labels(tmp_path / "things")[0]["name"] == "background"  # one instances file: objects on background
    assert main(["masks", "--annotations", *files, "--images", str(stand_in_images), "--output",
                 str(tmp_path / "asked"), "--unlabeled", "background"]) == 0
    assert len(read_labels(tmp_path / "asked")) == 134
    capsys.readouterr()
    assert main(["train", "--train-dir", str(tmp_path / "merged"), "--num_classes", "134"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "merged/labels.csv: 133 classes (no background class), but --num_classes 134")
    assert main(["masks", "--annotations", *files, "--panoptic-masks", str(PANOPTIC / "panoptic"), "--images",
                 str(stand_in_images), "--output", str(tmp_path / "bad")]) == 2
    assert "a panoptic split has one file, not 2" in capsys.readouterr().err
