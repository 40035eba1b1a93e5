"""Mask semantics on handmade cases whose pixels we know."""

import numpy as np
import pytest
from conftest import CATEGORIES, square
from pycocotools import mask as mask_utils

from cocoseg.masks.label_map import LabelRules, category_names, label_map
from cocoseg.masks.paint import UnusableImage, decode_segmentation, paint_mask, rle_string_counts
from cocoseg.shared.errors import InputError
from cocoseg.shared.labels import IGNORE

LABEL_OF = {4: 1, 17: 2, 90: 3}
DECLARED = {4, 17, 90}


def paint(anns, h=10, w=10, label_of=LABEL_OF):
    return paint_mask(anns, h, w, label_of, DECLARED)


def test_labels_follow_sorted_category_ids():
    cats = [{"id": 90, "name": "bird"}, {"id": 4, "name": "cat"}, {"id": 17, "name": "dog"}]
    assert label_map("f.json", category_names("f.json", cats)) == [(1, 4, "cat"), (2, 17, "dog"), (3, 90, "bird")]


def test_explicit_class_list_sets_label_order_by_name_or_id():
    names = category_names("f.json", CATEGORIES)
    assert label_map("f.json", names, LabelRules(["bird", 4])) == [(1, 90, "bird"), (2, 4, "cat")]


@pytest.mark.parametrize("classes, fault", [(["horse"], "'horse' from the config is not among"),
                                            ([4, "cat"], "listed twice")])
def test_bad_class_list_names_the_file(classes, fault):
    with pytest.raises(InputError, match=fault) as err:
        label_map("data/f.json", category_names("data/f.json", CATEGORIES), LabelRules(classes))
    assert str(err.value).startswith("data/f.json: ")


def test_small_instance_stays_on_top_whatever_the_annotation_order():
    big = {"id": 1, "category_id": 4, "segmentation": [square(0, 0, 8, 8)]}
    small = {"id": 2, "category_id": 17, "segmentation": [square(2, 2, 4, 4)]}
    for order in ([big, small], [small, big]):
        mask, notes = paint(order)
        assert notes == []
        assert (mask[2:4, 2:4] == 2).all()
        assert (mask == 1).sum() == 64 - 4
        assert (mask == 0).sum() == 100 - 64


def test_equal_areas_lower_annotation_id_is_painted_first():
    a = {"id": 5, "category_id": 4, "segmentation": [square(0, 0, 4, 4)]}
    b = {"id": 9, "category_id": 17, "segmentation": [square(2, 2, 6, 6)]}
    mask, _ = paint([b, a])
    assert mask[3, 3] == 2  # id 9 painted later, so on top


def test_crowd_is_ignore_only_where_no_instance():
    person = {"id": 1, "category_id": 4, "segmentation": [square(0, 0, 5, 10)]}
    crowd_mask = np.zeros((10, 10), np.uint8, order="F")
    crowd_mask[:, 3:8] = 1
    rle = mask_utils.encode(crowd_mask)
    crowd = {"id": 2, "category_id": 17, "iscrowd": 1,
             "segmentation": {"size": [10, 10], "counts": rle["counts"].decode()}}
    mask, _ = paint([crowd, person])
    assert (mask[:, :5] == 1).all()
    assert (mask[:, 5:8] == IGNORE).all()
    assert (mask[:, 8:] == 0).all()


def test_string_and_list_rle_paint_the_same_pixels():
    region = np.zeros((10, 10), np.uint8, order="F")
    region[1:4, 2:9] = 1
    compressed = mask_utils.encode(region)
    as_list = rle_string_counts(compressed["counts"]).tolist()
    for seg in ({"size": [10, 10], "counts": compressed["counts"].decode()},
                {"size": [10, 10], "counts": as_list}):
        mask, _ = paint([{"id": 1, "category_id": 90, "segmentation": seg}])
        assert np.array_equal(mask, region * 3)


def test_rle_string_decoder_matches_pycocotools_on_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = np.asfortranarray((rng.random((13, 17)) < rng.random()).astype(np.uint8))
        runs = rle_string_counts(mask_utils.encode(m)["counts"]).tolist()
        assert sum(runs) == 13 * 17
        rebuilt = mask_utils.decode(mask_utils.frPyObjects({"size": [13, 17], "counts": runs}, 13, 17))
        assert np.array_equal(rebuilt, m)


def test_two_point_polygon_is_not_taken_for_a_bbox():
    # frPyObjects reads a 4-number first part as a box; it has no area and must paint nothing.
    mask, notes = paint([{"id": 1, "category_id": 4, "segmentation": [[1, 1, 8, 8]]}])
    assert not mask.any()
    assert notes == ["annotation 1: dropped 1 polygon part(s) with fewer than 3 points"]


def test_degenerate_part_is_dropped_and_the_rest_painted():
    seg = [[1, 1, 8, 8], square(0, 0, 3, 3)]
    mask, notes = paint([{"id": 1, "category_id": 4, "segmentation": seg}])
    assert (mask == 1).sum() == 9
    assert "fewer than 3 points" in notes[0]


def test_empty_segmentation_paints_nothing_and_is_noted():
    mask, notes = paint([{"id": 3, "category_id": 4, "segmentation": []}])
    assert not mask.any()
    assert notes == ["annotation 3: empty segmentation"]


def test_odd_coordinate_count_sets_its_bbox_to_ignore():
    bad = {"id": 7, "category_id": 4, "segmentation": [[1, 1, 6, 1, 6, 6, 1]], "bbox": [1, 1, 5, 5]}
    good = {"id": 8, "category_id": 17, "segmentation": [square(7, 7, 10, 10)]}
    mask, notes = paint([bad, good])
    assert (mask[1:6, 1:6] == IGNORE).all()
    assert (mask == IGNORE).sum() == 25
    assert (mask == 2).sum() == 9
    assert "odd number of coordinates" in notes[0]


def test_corrupt_geometry_without_bbox_makes_the_image_unusable():
    bad = {"id": 7, "category_id": 4, "segmentation": [[1, 1, "x", 1, 6, 6]]}
    with pytest.raises(UnusableImage, match="annotation 7: polygon is not a list of finite numbers"):
        paint([bad])


def test_points_outside_the_image_are_clipped():
    seg = [square(-5, -5, 5, 5), square(8, 8, 15, 15)]
    mask, _ = paint([{"id": 1, "category_id": 4, "segmentation": seg}])
    assert (mask[:5, :5] == 1).all() and (mask[8:, 8:] == 1).all()
    assert (mask == 1).sum() == 25 + 4


def test_unknown_category_becomes_ignore_not_background():
    known = {"id": 1, "category_id": 4, "segmentation": [square(0, 0, 4, 4)]}
    unknown = {"id": 2, "category_id": 55, "segmentation": [square(2, 2, 8, 8)]}
    mask, notes = paint([known, unknown])
    assert (mask[:4, :4] == 1).all()
    assert (mask == IGNORE).sum() == 36 - 4
    assert notes == ["annotation 2: unknown category id 55; its region is set to ignore (255)"]


def test_category_left_out_of_class_list_is_background():
    anns = [{"id": 1, "category_id": 4, "segmentation": [square(0, 0, 4, 4)]},
            {"id": 2, "category_id": 17, "segmentation": [square(5, 5, 9, 9)]}]
    mask, notes = paint(anns, label_of={17: 1})
    assert (mask == 1).sum() == 16 and mask[0, 0] == 0 and notes == []


@pytest.mark.parametrize("seg, fault", [
    ({"size": [10, 9], "counts": [90]}, "RLE size [10, 9] differs"),
    ({"size": [10, 10], "counts": [5, 5]}, "RLE runs cover 10 pixels, not 100"),
    ({"size": [10, 10], "counts": "0\x7f"}, "corrupt RLE string"),
    ({"size": [10, 10], "counts": [50, -1, 51]}, "not non-negative integers"),
    ({"polygon": 1}, "neither polygons nor RLE"),
])
def test_broken_rle_is_a_fault_not_a_crash(seg, fault):
    decoded = decode_segmentation(seg, 10, 10)
    assert decoded.runs is None and fault in decoded.fault


def test_png_encoder_round_trips_through_pillow():
    import io

    from PIL import Image

    from cocoseg.masks.png import encode_mask_png

    rng = np.random.default_rng(1)
    for shape in ((1, 1), (7, 300), (480, 640)):
        m = rng.integers(0, 256, size=shape, dtype=np.uint8)
        m[: shape[0] // 2] = 0
        decoded = Image.open(io.BytesIO(encode_mask_png(m)))
        assert decoded.mode == "L" and np.array_equal(np.asarray(decoded), m)


def test_painting_matches_naive_full_frame_painting_on_random_shapes():
    rng = np.random.default_rng(7)
    for trial in range(40):
        h, w = rng.integers(1, 30, size=2)
        anns, expected_layers = [], []
        for k in range(rng.integers(1, 5)):
            region = np.asfortranarray((rng.random((h, w)) < rng.random() * 0.6).astype(np.uint8))
            if rng.random() < 0.5:  # a compact blob instead of noise: runs spanning columns
                region[:] = 0
                y0, x0 = rng.integers(0, h), rng.integers(0, w)
                region[y0:y0 + rng.integers(1, h + 1), x0:x0 + rng.integers(1, w + 1)] = 1
            counts = mask_utils.encode(region)["counts"].decode()
            anns.append({"id": k, "category_id": [4, 17, 90][k % 3], "iscrowd": int(k == 3),
                         "segmentation": {"size": [int(h), int(w)], "counts": counts}})
            expected_layers.append(region.astype(bool))
        expected = np.zeros((h, w), np.uint8)
        things = sorted(range(len(anns)), key=lambda i: (-expected_layers[i].sum(), i))
        for i in things:
            if not anns[i]["iscrowd"]:
                expected[expected_layers[i]] = LABEL_OF[anns[i]["category_id"]]
        for i in range(len(anns)):
            if anns[i]["iscrowd"]:
                expected[expected_layers[i] & (expected == 0)] = IGNORE
        mask, _ = paint(anns, int(h), int(w))
        assert np.array_equal(mask, expected), trial


@pytest.mark.parametrize("part", [[1, 1, "5", 1, 5, 5], [1, 1, True, 1, 5, 5], [1, 1, None, 1, 5, 5],
                                  [[1, 1], [5, 1], [5, 5]], [1, 1, float("nan"), 1, 5, 5], "1 1 5 1 5 5"])
def test_non_numeric_polygon_is_a_fault(part):
    decoded = decode_segmentation([part], 10, 10)
    assert decoded.runs is None and decoded.fault == "polygon is not a list of finite numbers"
