"""A small synthetic COCO dataset, so that the default workflow runs with no data from the user.

Built to exercise what real files have (non-contiguous category ids, multi-part polygons,
overlaps, crowd RLE with string and list counts, images without annotations, varied sizes,
textured backgrounds) while staying learnable in minutes on a CPU: every class has its own
colour, jittered per object. Shapes are drawn largest first, the order the masks paint in,
so the picture and its mask agree.

With `stuff`, each picture's background is a scene of stuff regions (sky above, ground below,
sometimes a wall) annotated in a second file, `<split>_stuff.json`, as COCO-Stuff ships
them, with a thin unlabelled band at the horizon: the data for `masks.unlabeled: ignore`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from cocoseg.shared.files import atomic_path, write_bytes

CATEGORIES = [  # (id, name, RGB): ids deliberately non-contiguous, as in COCO
    (3, "disc", (215, 55, 45)),
    (8, "square", (55, 175, 70)),
    (14, "triangle", (45, 85, 215)),
    (21, "twin-bars", (235, 195, 35)),
    (42, "star", (165, 55, 195)),
]
STUFF_CATEGORIES = [  # (id, name, RGB): regions under the shapes, in a second file (COCO-Stuff's layout)
    (106, "sky", (150, 185, 215)),
    (149, "ground", (125, 105, 80)),
    (172, "wall", (150, 150, 145)),
]
UNLABELLED_BAND = 3  # rows between sky and ground that no stuff annotation covers
SIZES = [(128, 128), (160, 120), (120, 160), (144, 112)]
EMPTY_SHARE = 0.08
CROWD_SHARE = 0.25


def _regular(cx, cy, r, n, angle, inner=None) -> list[float]:
    points = []
    for k in range(n * (2 if inner else 1)):
        radius = inner if inner and k % 2 else r
        a = angle + math.pi * k / (n if inner else n / 2)
        points += [cx + radius * math.cos(a), cy + radius * math.sin(a)]
    return [round(v, 2) for v in points]


def _shape(rng: np.random.Generator, name: str, w: int, h: int) -> list[list[float]]:
    """Polygon parts of one object; twin-bars is one object in two parts."""
    r = rng.uniform(9, min(w, h) / 3.5)
    cx, cy = rng.uniform(r * 0.5, w - r * 0.5), rng.uniform(r * 0.5, h - r * 0.5)
    angle = rng.uniform(0, 2 * math.pi)
    if name == "disc":
        return [_regular(cx, cy, r, 24, angle)]
    if name == "square":
        return [_regular(cx, cy, r, 4, angle)]
    if name == "triangle":
        return [_regular(cx, cy, r, 3, angle)]
    if name == "star":
        return [_regular(cx, cy, r, 5, angle, inner=r * 0.45)]
    # twin-bars: two parallel bars with a gap between them
    along = np.array([math.cos(angle), math.sin(angle)])
    across = np.array([-along[1], along[0]])
    parts = []
    for offset in (-0.45 * r, 0.45 * r):
        centre = np.array([cx, cy]) + offset * across
        corners = [centre + s * r * along + t * 0.22 * r * across for s, t in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
        parts.append([round(float(v), 2) for c in corners for v in c])
    return parts


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Low-saturation texture: waves, a gradient and grain, so background is not one colour."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(90, 150, size=3)
    waves = sum(rng.uniform(6, 18) * np.sin(x * rng.uniform(0.05, 0.4) + y * rng.uniform(0.05, 0.4)
                                             + rng.uniform(0, 6)) for _ in range(3))
    gradient = rng.uniform(-25, 25) * (x / w) + rng.uniform(-25, 25) * (y / h)
    img = base[None, None, :] + (waves + gradient)[..., None]
    return img + rng.normal(0, 6, size=(h, w, 3))


def _raster(parts: list[list[float]], w: int, h: int) -> np.ndarray:
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    for part in parts:
        draw.polygon(part, fill=1)
    return np.asarray(canvas, dtype=bool)


def _bbox(rle: dict) -> list[float]:
    return [round(float(v), 2) for v in mask_utils.toBbox(rle)]


def _textured(rng: np.random.Generator, colour, w: int, h: int) -> np.ndarray:
    """The background's texture around `colour`."""
    texture = _background(rng, w, h)
    return texture - texture.mean(axis=(0, 1)) + np.array(colour)


def make_scene(rng: np.random.Generator, w: int, h: int, next_ann_id: int) -> tuple[np.ndarray, list[dict]]:
    """A stuff background and its annotations (rectangles): sky, ground, sometimes a wall."""
    horizon = int(rng.uniform(0.3, 0.6) * h)
    (sky_id, _, sky), (ground_id, _, ground), (wall_id, _, wall) = STUFF_CATEGORIES
    img = np.empty((h, w, 3))
    img[:horizon] = _textured(rng, sky, w, horizon)
    img[horizon:] = _textured(rng, ground, w, h - horizon)
    regions = [(sky_id, 0, 0, w, horizon - UNLABELLED_BAND // 2 - 1),
               (ground_id, 0, horizon + UNLABELLED_BAND // 2 + 1, w, h)]
    if rng.random() < 0.5:
        x0 = int(rng.uniform(0, 0.6) * w)
        x1, y0 = x0 + int(rng.uniform(0.2, 0.4) * w), int(rng.uniform(0.1, 0.25) * h)
        img[y0:horizon, x0:x1] = _textured(rng, wall, x1 - x0, horizon - y0)
        regions.append((wall_id, x0, y0, x1, horizon - UNLABELLED_BAND // 2 - 1))
    anns = [{"id": next_ann_id + k, "category_id": cid, "iscrowd": 0, "area": float((x1 - x0) * (y1 - y0)),
             "bbox": [x0, y0, x1 - x0, y1 - y0], "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]]}
            for k, (cid, x0, y0, x1, y1) in enumerate(regions)]
    return img, anns


def make_image(rng: np.random.Generator, w: int, h: int, image_id: int, next_ann_id: int,
               scene: np.ndarray | None = None):
    """One picture and its COCO annotations, drawn over `scene` (default: a plain texture)."""
    img = _background(rng, w, h) if scene is None else scene
    anns = []
    if rng.random() < EMPTY_SHARE:
        return img, anns
    if rng.random() < CROWD_SHARE:  # a crowd: a cluster of small discs, one RLE region
        cat_id, _, colour = CATEGORIES[rng.integers(len(CATEGORIES))]
        cx, cy = rng.uniform(0.2 * w, 0.8 * w), rng.uniform(0.2 * h, 0.8 * h)
        region = np.zeros((h, w), dtype=bool)
        for _ in range(rng.integers(5, 10)):
            blob = _raster([_regular(cx + rng.normal(0, w / 10), cy + rng.normal(0, h / 10),
                                     rng.uniform(3, 6), 12, 0.0)], w, h)
            img[blob] = np.array(colour) + rng.normal(0, 12, size=3)
            region |= blob
        rle = mask_utils.encode(np.asfortranarray(region.astype(np.uint8)))
        if image_id % 2 == 0:  # both RLE flavours: compressed string or list counts
            segmentation = {"size": [h, w], "counts": rle["counts"].decode("ascii")}
        else:
            segmentation = {"size": [h, w], "counts": _list_counts(region)}
        anns.append({"category_id": cat_id, "segmentation": segmentation, "iscrowd": 1,
                     "area": float(mask_utils.area(rle)), "bbox": _bbox(rle)})
    objects = []
    for _ in range(rng.integers(1, 5)):
        cat_id, name, colour = CATEGORIES[rng.integers(len(CATEGORIES))]
        parts = _shape(rng, name, w, h)
        rle = mask_utils.merge(mask_utils.frPyObjects(parts, h, w))
        objects.append((float(mask_utils.area(rle)), cat_id, colour, parts, rle))
    for area, cat_id, colour, parts, rle in sorted(objects, key=lambda o: -o[0]):
        img[_raster(parts, w, h)] = np.array(colour) + rng.normal(0, 12, size=3)
        anns.append({"category_id": cat_id, "segmentation": parts, "iscrowd": 0,
                     "area": area, "bbox": _bbox(rle)})
    for k, ann in enumerate(anns):
        ann.update(id=next_ann_id + k, image_id=image_id)
    return img + rng.normal(0, 4, size=img.shape), anns


def _list_counts(region: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE: run lengths in column-major order, starting with zeros."""
    flat = region.flatten(order="F").astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat[0] else runs


def make_split(out_dir: Path, split: str, count: int, seed: int, first_id: int, stuff: bool = False) -> None:
    """Write `out_dir/images/<split>/*.jpg` and `out_dir/annotations/<split>.json` (and
    `<split>_stuff.json` with `stuff`)."""
    rng = np.random.default_rng([seed, first_id])
    scene_rng = np.random.default_rng([seed, first_id, 1])
    images, annotations, stuff_annotations = [], [], []
    image_dir = Path(out_dir) / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        w, h = SIZES[rng.integers(len(SIZES))]
        image_id = first_id + 7 * i  # sparse ids, as in COCO
        scene = None
        if stuff:
            scene, regions = make_scene(scene_rng, w, h, next_ann_id=image_id * 100 + 50)
            stuff_annotations += [{**region, "image_id": image_id} for region in regions]
        pixels, anns = make_image(rng, w, h, image_id, next_ann_id=image_id * 100, scene=scene)
        name = f"{image_id:012d}.jpg"
        with atomic_path(image_dir / name) as tmp:
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(tmp, format="JPEG", quality=92)
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        annotations += anns
    coco = {
        "info": {"description": f"cocoseg synthetic demo data, split {split}, seed {seed}"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": cid, "name": name, "supercategory": "shape"} for cid, name, _ in CATEGORIES],
    }
    write_bytes(Path(out_dir) / "annotations" / f"{split}.json", json.dumps(coco).encode())
    if stuff:
        stuff_coco = {**coco, "annotations": stuff_annotations,
                      "categories": [{"id": cid, "name": name, "supercategory": "stuff"}
                                     for cid, name, _ in STUFF_CATEGORIES]}
        write_bytes(Path(out_dir) / "annotations" / f"{split}_stuff.json", json.dumps(stuff_coco).encode())


def make_demo(out_dir: Path, splits: dict[str, int], seed: int = 0, stuff: bool = False) -> None:
    for k, (split, count) in enumerate(sorted(splits.items())):
        make_split(Path(out_dir), split, count, seed, first_id=100_000 * (k + 1), stuff=stuff)
