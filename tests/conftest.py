import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

REPO = Path(__file__).resolve().parents[1]
COCO_REAL = REPO / "tests" / "data" / "coco-real"  # in the repository: 14 real COCO images

@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory):
    """Folders for a test module's shared fixtures, removed once the module's tests are done:
    a trained model's folder holds hundreds of MB, and the suite's temporary disk stays small."""
    made = []

    def make(name: str) -> Path:
        made.append(tmp_path_factory.mktemp(name))
        return made[-1]

    yield make
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


CATEGORIES = [{"id": 4, "name": "cat"}, {"id": 17, "name": "dog"}, {"id": 90, "name": "bird"}]


def square(x0, y0, x1, y1):
    """Polygon of the pixel block [x0, x1) x [y0, y1) as pycocotools rasterises it."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def ann(ann_id, image_id, category_id, segmentation, iscrowd=0, bbox=None):
    return {"id": ann_id, "image_id": image_id, "category_id": category_id,
            "segmentation": segmentation, "iscrowd": iscrowd, "bbox": bbox or [0, 0, 1, 1]}


class CodeOnLoad:
    """Pickles to a call of os.mkdir(marker): loading it without `weights_only` creates `marker`."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def save_image(path: Path, width: int, height: int, mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(width * 1000 + height)
    pixels = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path, format="JPEG" if path.suffix == ".jpg" else None)
    return path


@pytest.fixture
def coco_dir(tmp_path):
    """Return a writer of a COCO file plus an image folder holding each listed image."""
    def write(images, annotations, categories=CATEGORIES, make_files=True, raw=None):
        image_dir = tmp_path / "images"
        image_dir.mkdir(exist_ok=True)
        if make_files:
            for img in images:
                save_image(image_dir / img["file_name"], img["width"], img["height"])
        path = tmp_path / "instances.json"
        data = raw if raw is not None else {"images": images, "annotations": annotations, "categories": categories}
        path.write_text(json.dumps(data), encoding="utf-8")
        return path, image_dir
    return write


def demo_splits(root: Path) -> Path:
    """`cocoseg masks` output for a 13-image train and 6-image val demo split (landscape, portrait
    and square images), under `root`."""
    from cocoseg.masks.convert import convert
    from cocoseg.masks.demo import make_demo

    make_demo(root / "demo", {"train": 13, "val": 6}, seed=2)
    for split in ("train", "val"):
        convert(root / "demo" / "annotations" / f"{split}.json", root / "demo" / "images" / split, root / split)
    return root


def mixed_image_folder(folder: Path) -> dict[str, str]:
    """A folder of new images as users have them: real photos (one in a subfolder), and files that
    cannot be predicted. Returns each file's expected fault ("" for a usable image)."""
    import numpy as np

    photos = sorted((COCO_REAL / "images").rglob("*.jpg"))
    (folder / "sub").mkdir(parents=True)
    for photo in photos[:3]:
        shutil.copy(photo, folder / photo.name)
    shutil.copy(photos[3], folder / "sub" / "nested.jpg")
    shutil.copy(photos[4], folder / "twin.jpg")
    Image.open(photos[4]).save(folder / "twin.png")
    whole = photos[5].read_bytes()
    (folder / "broken.jpg").write_bytes(whole[: len(whole) // 2])
    (folder / "fake.jpg").write_text("not an image\n")
    (folder / "notes.txt").write_text("taken on a Tuesday\n")
    ramp = (np.arange(48 * 64).reshape(48, 64) * 20).astype(np.uint16)
    Image.fromarray(ramp).save(folder / "deep.png")
    Image.new("1", (12000, 9000)).save(folder / "huge.png")  # 108 M pixels, above the default limit
    return {**{photo.name: "" for photo in photos[:3]}, "sub/nested.jpg": "", "twin.jpg": "", "deep.png": "",
            "twin.png": "its mask would be twin.png, already twin.jpg's",
            "broken.jpg": "image unreadable: image file is truncated",
            "fake.jpg": "image unreadable: not a known image format",
            "notes.txt": "not an image file (suffix .txt)",
            "huge.png": "image too large: 108000000 pixels, above the limit of 100000000"}
