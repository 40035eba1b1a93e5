"""The loader hands over uint8; normalisation on the device gives the float loader's numbers exactly."""

import os

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from albumentations.pytorch import ToTensorV2
from PIL import Image

from cocoseg.convert import convert
from cocoseg.data import MEAN, STD, SegmentationDataset, eval_transform, load_sample, normalize, train_transform
from cocoseg.demo import make_demo
from cocoseg.images import load_rgb
from conftest import COCO_REAL

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def float_path(transform: A.Compose) -> A.Compose:
    """The same transform followed by albumentations' Normalize + ToTensorV2 (in the loader, on the CPU)."""
    return A.Compose([*transform.transforms, A.Normalize(mean=MEAN, std=STD), ToTensorV2()],
                     seed=transform.seed if hasattr(transform, "seed") else None)


def test_device_normalisation_equals_the_float_loader(tmp_path):
    make_demo(tmp_path / "demo", {"train": 6}, seed=1)
    convert(tmp_path / "demo" / "annotations" / "train.json", tmp_path / "demo" / "images" / "train", tmp_path / "s")
    for make in (lambda: train_transform((64, 64), seed=7), lambda: eval_transform((64, 64))):
        new = SegmentationDataset(tmp_path / "s", make())
        old = float_path(make())
        for index, row in enumerate(new.rows):
            image, mask = new[index]
            assert image.dtype == torch.uint8 and mask.dtype == torch.uint8 and image.shape[-1] == 3
            expected = old(**dict(zip(("image", "mask"), load_sample(tmp_path / "s", row))))
            assert torch.equal(normalize(image[None])[0], expected["image"])  # bit for bit
            assert torch.equal(mask, expected["mask"].to(torch.uint8))


def test_normalize_matches_imagenet_statistics():
    images = torch.tensor([0, 128, 255], dtype=torch.uint8).view(1, 1, 3, 1).expand(1, 1, 3, 3)
    out = normalize(images)
    for channel, (mean, std) in enumerate(zip(MEAN, STD)):
        assert np.allclose(out[0, channel, 0].numpy(), (np.array([0, 128, 255]) / 255 - mean) / std, atol=1e-6)


def test_jpegs_decode_to_pillows_pixels(tmp_path):
    """The loader's JPEG decoder gives the pixels Pillow gives, for colour, grey, CMYK and progressive files."""
    originals = sorted((COCO_REAL / "images").glob("*.jpg"))
    with Image.open(originals[0]) as im:
        im.convert("L").save(tmp_path / "grey.jpg", quality=90)
        im.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=90)
        im.save(tmp_path / "progressive.jpg", quality=90, progressive=True)
    for path in [*originals, *sorted(tmp_path.glob("*.jpg"))]:
        pixels = load_rgb(path)
        with Image.open(path) as im:
            assert np.array_equal(pixels, np.asarray(im.convert("RGB"))), path.name
        assert pixels.dtype == np.uint8 and pixels.shape[2] == 3 and pixels.flags["C_CONTIGUOUS"]


def test_a_truncated_jpeg_is_still_refused(tmp_path):
    data = (COCO_REAL / "images" / "000000005001.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(OSError, match="truncated"):
        load_rgb(tmp_path / "cut.jpg")


class _OpenCVThreads(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> int:
        cv2.resize(np.zeros((64, 64, 3), np.uint8), (32, 32))
        return cv2.getNumThreads()


def test_loader_workers_use_one_opencv_thread_each():
    """Workers fill the job's CPUs; an OpenCV pool in each would oversubscribe them."""
    cv2.resize(np.zeros((64, 64, 3), np.uint8), (32, 32))  # the parent's pool in use before the fork
    loader = torch.utils.data.DataLoader(_OpenCVThreads(), batch_size=None, num_workers=1, timeout=60)
    assert list(loader) == [1]
