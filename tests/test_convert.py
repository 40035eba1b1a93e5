"""The mask stage end to end: reproducibility, shard-count invariance, real COCO data."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import COCO_REAL
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from cocoseg.masks.convert import convert
from cocoseg.masks.demo import make_demo
from cocoseg.masks.split_folder import read_labels, read_manifest, read_manifest_rows
from cocoseg.shared.errors import InputError
from cocoseg.shared.files import FILE_MODE


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink() and p.name != "summary.json"}


@pytest.fixture(scope="module")
def demo(module_tmp):
    root = module_tmp("demo")
    make_demo(root, {"train": 30, "val": 12}, seed=3)
    return root


def test_demo_data_is_byte_identical_for_a_seed(demo, tmp_path):
    make_demo(tmp_path, {"train": 30, "val": 12}, seed=3)
    assert tree_bytes(tmp_path) == tree_bytes(demo)
    make_demo(tmp_path / "other", {"train": 30, "val": 12}, seed=4)
    assert tree_bytes(tmp_path / "other") != tree_bytes(demo)


def test_demo_data_has_what_real_files_have(demo):
    coco = json.loads((demo / "annotations" / "train.json").read_text())
    ids = [c["id"] for c in coco["categories"]]
    assert ids != list(range(1, len(ids) + 1))  # non-contiguous
    anns = coco["annotations"]
    crowd = [a for a in anns if a["iscrowd"]]
    assert any(isinstance(a["segmentation"]["counts"], str) for a in crowd)
    assert any(isinstance(a["segmentation"]["counts"], list) for a in crowd)
    assert any(len(a["segmentation"]) > 1 for a in anns if not a["iscrowd"])  # multi-part polygons
    annotated = {a["image_id"] for a in anns}
    assert any(img["id"] not in annotated for img in coco["images"])  # images with no annotation
    assert len({(img["width"], img["height"]) for img in coco["images"]}) > 1


def test_masks_and_manifest_do_not_depend_on_shards_or_workers(demo, tmp_path):
    runs = {}
    for shards, workers in ((1, 1), (3, 1), (7, 2)):
        out = tmp_path / f"s{shards}w{workers}"
        convert(demo / "annotations" / "train.json", demo / "images" / "train", out,
                workers=workers, shards=shards)
        runs[shards] = tree_bytes(out)
        assert (out / "manifest.csv").stat().st_mode & 0o777 == FILE_MODE  # not mkstemp's 0600
    assert runs[1] == runs[3] == runs[7]
    assert len([k for k in runs[1] if k.startswith("masks/")]) == 30


def holdout_of(out: Path) -> tuple[set[str], set[str]]:
    rows = read_manifest_rows(out / "manifest.csv")
    return ({r["image_id"] for r in rows if r["status"] == "ok" and r["holdout"] == "1"},
            {r["image_id"] for r in rows if r["status"] == "ok" and r["holdout"] == "0"})


def test_holdout_is_a_seeded_draw_of_whole_images_recorded_in_the_manifest(demo, tmp_path):
    source = (demo / "annotations" / "train.json", demo / "images" / "train")
    draws = {}
    for name, shards, seed in (("a", 1, 0), ("b", 5, 0), ("c", 1, 1)):
        convert(*source, tmp_path / name, shards=shards, holdout_fraction=0.2, holdout_seed=seed)
        draws[name] = holdout_of(tmp_path / name)
    held, fit = draws["a"]
    assert len(held) == 6 and len(fit) == 24 and not held & fit  # 20% of 30, disjoint, all images kept
    assert draws["b"] == draws["a"]  # independent of the shard count
    assert draws["c"][0] != held  # another seed, another draw
    assert read_manifest(tmp_path / "a", "holdout") == [r for r in read_manifest(tmp_path / "a")
                                                        if r["image_id"] in held]
    assert {r["image_id"] for r in read_manifest(tmp_path / "a", "fit")} == fit
    convert(*source, tmp_path / "count", holdout_count=4, holdout_seed=0)
    assert len(holdout_of(tmp_path / "count")[0]) == 4


def test_a_holdout_that_leaves_nothing_to_train_on_is_refused(demo, tmp_path):
    with pytest.raises(InputError, match="holdout of 30 image"):
        convert(demo / "annotations" / "train.json", demo / "images" / "train", tmp_path, holdout_count=30)


def independent_painting(coco: COCO, image_id: int) -> np.ndarray:
    """Paint with pycocotools' own annToRLE, written apart from cocoseg.masks.paint."""
    info = coco.imgs[image_id]
    labels = {cid: i + 1 for i, cid in enumerate(sorted(coco.cats))}
    anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=None))
    out = np.zeros((info["height"], info["width"]), np.uint8)
    things = sorted((a for a in anns if not a["iscrowd"]),
                    key=lambda a: (-int(mask_utils.area(coco.annToRLE(a))), a["id"]))
    for a in things:
        out[coco.annToMask(a) == 1] = labels[a["category_id"]]
    for a in anns:
        if a["iscrowd"]:
            out[(coco.annToMask(a) == 1) & (out == 0)] = 255
    return out


def test_real_coco_images_in_the_repository_give_pycocotools_masks(tmp_path):
    """The repository's own 14 real COCO images (tests/data/coco-real), crowd RLE included."""
    annotations = COCO_REAL / "instances.json"
    summary = convert(annotations, COCO_REAL / "images", tmp_path / "out", workers=2, shards=3)
    assert summary["ok"] == summary["images"] == 14 and summary["annotations"] == 269
    coco = COCO(str(annotations))
    seen = set()
    for image_id, info in coco.imgs.items():
        mask = np.asarray(Image.open(tmp_path / "out" / "masks" / Path(info["file_name"]).with_suffix(".png")))
        assert np.array_equal(mask, independent_painting(coco, image_id)), info["file_name"]
        seen |= set(np.unique(mask).tolist())
    assert len(seen - {0, 255}) >= 30 and 255 in seen  # many classes, crowd regions as ignore
    # the shard jobs count pixels per class, so the report never decodes a mask
    counts = sum(np.bincount(np.asarray(Image.open(m)).ravel(), minlength=256)
                 for m in (tmp_path / "out" / "masks").glob("*.png"))
    labels = read_labels(tmp_path / "out")
    assert summary["class_pixels"] == {row["name"]: int(counts[int(row["label"])]) for row in labels}


def test_all_80_categories_and_every_crowd_form_on_the_repositorys_real_images(tmp_path):
    """All 80 COCO categories at their labels and crowd regions in each form a COCO file holds them
    (RLE with counts as a list or as a compressed string, polygons), on the 14 real images: their
    80 smallest objects (painted last, so visible) get one category each."""
    data = json.loads((COCO_REAL / "instances.json").read_text())
    categories = sorted(c["id"] for c in data["categories"])
    assert len(categories) == 80
    things = sorted((a for a in data["annotations"] if not a["iscrowd"]), key=lambda a: (a["area"], a["id"]))
    for index, annotation in enumerate(things):
        annotation["category_id"] = categories[index % 80]
    crowds = [a for a in data["annotations"] if a["iscrowd"]]
    assert len(crowds) >= 3 and all(isinstance(a["segmentation"]["counts"], list) for a in crowds)
    compressed = mask_utils.frPyObjects(crowds[0]["segmentation"], *crowds[0]["segmentation"]["size"])
    crowds[0]["segmentation"] = {"size": compressed["size"], "counts": compressed["counts"].decode()}
    x, y, w, h = crowds[1]["bbox"]
    crowds[1]["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    annotations = tmp_path / "instances.json"
    annotations.write_text(json.dumps(data))
    summary = convert(annotations, COCO_REAL / "images", tmp_path / "out", workers=2)
    assert summary["ok"] == summary["images"] == 14 and summary["classes"] == 80
    coco = COCO(str(annotations))
    seen = set()
    for image_id, info in coco.imgs.items():
        mask = np.asarray(Image.open(tmp_path / "out" / "masks" / Path(info["file_name"]).with_suffix(".png")))
        assert np.array_equal(mask, independent_painting(coco, image_id)), info["file_name"]
        seen |= set(np.unique(mask).tolist())
    assert set(range(1, 81)) <= seen and 255 in seen
    crowd_images = {a["image_id"] for a in crowds[:3]}
    assert all(255 in np.asarray(Image.open(tmp_path / "out" / "masks" / Path(coco.imgs[i]["file_name"])
                                            .with_suffix(".png"))) for i in crowd_images)


def plain_grouping(path: Path) -> dict[int, list]:
    """Each image id's annotations in file order, read with json.load."""
    data = json.loads(path.read_text())
    grouped = {image["id"]: [] for image in data["images"]}
    for annotation in data["annotations"]:
        grouped.setdefault(annotation["image_id"], []).append(annotation)
    return grouped


def test_the_streamed_index_holds_what_json_load_reads(tmp_path):
    import sys

    from cocoseg.masks.coco import annotations_of, load_split

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_index import write_coco_like

    write_coco_like(tmp_path / "generated.json", images=300, seed=2)
    for path in (COCO_REAL / "instances.json", tmp_path / "generated.json"):
        expected = plain_grouping(path)
        split = load_split(path)
        assert [image["id"] for image in split.images] == sorted(expected)
        for image in split.images:
            assert annotations_of(image) == expected[image["id"]]
    half = load_split(tmp_path / "generated.json", max_images=150)
    assert [image["id"] for image in half.images] == list(range(1, 151)) and half.orphan_annotations == 0


def test_a_file_only_pythons_json_reads_is_read_whole_with_a_note(tmp_path):
    from cocoseg.masks.coco import annotations_of, load_split

    path = tmp_path / "nan.json"
    path.write_text('{"images": [{"id": 1, "file_name": "a.jpg", "width": 4, "height": 4}], "categories": '
                    '[{"id": 1, "name": "x"}], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, '
                    '"area": NaN, "segmentation": [[0, 0, 2, 0, 2, 2]], "iscrowd": 0}]}')
    split = load_split(path)
    assert np.isnan(annotations_of(split.images[0])[0]["area"])
    assert any("NaN or Infinity" in note for note in split.notes)


@pytest.mark.slow
def test_the_index_grows_by_at_most_twice_the_files_size(tmp_path):
    """Measured in fresh processes, beside json.load of the same file (about eight times)."""
    import subprocess
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_index import write_coco_like

    path = tmp_path / "coco.json"
    write_coco_like(path, images=6000)
    size_kib = path.stat().st_size / 1024
    growth = {}
    for name, step in (("index", "from cocoseg.masks.convert import index_split; index_split(path, out, 1)"),
                       ("json.load", "import json; json.load(open(path, 'rb'))")):
        # VmHWM, the peak of this process's own memory (ru_maxrss would carry pytest's peak over
        # the fork), reset after the imports; growth = that peak less the memory held before
        code = ("import sys; from pathlib import Path; import cocoseg.masks.convert\n"
                "def kib(key): return int(next(l.split()[1] for l in open('/proc/self/status') if l.startswith(key)))\n"
                "path, out = Path(sys.argv[1]), Path(sys.argv[2])\n"
                "open('/proc/self/clear_refs', 'w').write('5')\n"
                "before = kib('VmRSS:')\n"
                f"{step}\n"
                "print(kib('VmHWM:') - before)")
        done = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / name)], capture_output=True,
                              text=True, check=True)
        growth[name] = int(done.stdout.strip()) / size_kib
    assert growth["json.load"] > 4 and growth["index"] < 2, growth


def test_the_holdout_count_caps_the_fraction():
    from cocoseg.masks.split_folder import holdout_size

    assert holdout_size(118_287, 0.15, 1000) == 1000  # COCO train: the cap
    assert holdout_size(200, 0.15, 1000) == 30  # below the cap, the fraction
    assert holdout_size(200, 0.15, None) == 30 and holdout_size(200, 0.0, 12) == 12  # no cap; a count alone
