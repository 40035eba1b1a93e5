"""The loader hands over uint8; normalisation on the device gives the float loader's numbers exactly."""

import os

import albumentations as A
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

from cocoseg.convert import convert
from cocoseg.data import MEAN, STD, SegmentationDataset, eval_transform, load_sample, normalize, train_transform
from cocoseg.demo import make_demo

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
