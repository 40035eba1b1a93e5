"""Reading a mask-stage split folder for training and evaluation.

A split folder is what `cocoseg masks` / the workflow writes: `images/`, `masks/`,
`manifest.csv`, `labels.csv`. Only `ok` rows are used.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations calls home at import

import albumentations as A
import cv2
import numpy as np
import pytorch_lightning as pl
import torch
from albumentations.pytorch import ToTensorV2
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .coco import IGNORE
from .files import InputError, read_csv

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet, as the encoders expect


def read_labels(split_dir: Path) -> list[dict]:
    path = Path(split_dir) / "labels.csv"
    if not path.is_file():
        raise InputError(f"{path}: not found (is {split_dir} a `cocoseg masks` output folder?)")
    return read_csv(path)


def read_manifest(split_dir: Path) -> list[dict]:
    """The usable images of a split, in manifest order."""
    path = Path(split_dir) / "manifest.csv"
    if not path.is_file():
        raise InputError(f"{path}: not found (is {split_dir} a `cocoseg masks` output folder?)")
    rows = [row for row in read_csv(path) if row["status"] == "ok"]
    if not rows:
        raise InputError(f"{path}: no usable image")
    return rows


def load_rgb(path: Path) -> np.ndarray:
    """Any mode (L, RGBA, CMYK, P) as RGB; EXIF orientation is not applied, as in COCO's annotations."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def load_mask(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im)


def train_transform(size: tuple[int, int], seed: int) -> A.Compose:
    """Random scale around the variant's size, pad with ignore, crop, flip, mild colour jitter."""
    height, width = size
    return A.Compose([
        A.LongestMaxSize(max_size=max(height, width)),
        A.RandomScale(scale_limit=(-0.25, 0.25), p=1.0),
        A.PadIfNeeded(min_height=height, min_width=width, border_mode=cv2.BORDER_CONSTANT,
                      fill=0, fill_mask=IGNORE),
        A.RandomCrop(height=height, width=width),
        A.HorizontalFlip(p=0.5),
        A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5),
        A.Normalize(mean=MEAN, std=STD),
        ToTensorV2(),
    ], seed=seed)


def eval_transform(size: tuple[int, int]) -> A.Compose:
    """Longest side to the variant's size, then pad bottom-right to the variant's full size.

    Padding at the bottom-right keeps the image at the top-left, so predictions are cropped
    back with a slice; padded mask pixels are 255 and never counted.
    """
    height, width = size
    return A.Compose([
        A.LongestMaxSize(max_size=max(height, width)),
        A.PadIfNeeded(min_height=height, min_width=width, position="top_left",
                      border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=IGNORE),
        A.Normalize(mean=MEAN, std=STD),
        ToTensorV2(),
    ])


class SegmentationDataset(Dataset):
    def __init__(self, split_dir: Path, transform: A.Compose):
        self.split_dir = Path(split_dir)
        self.rows = read_manifest(split_dir)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = self.rows[index]
        image = load_rgb(self.split_dir / "images" / row["file_name"])
        mask = load_mask(self.split_dir / "masks" / row["mask"])
        out = self.transform(image=image, mask=mask)
        return out["image"], out["mask"].long()


def _reseed_worker(worker_id: int) -> None:
    """Give each loader worker its own augmentation stream, derived from the run's seed.

    albumentations' Compose keeps its own generator; without this every worker would repeat
    the same augmentations. torch.initial_seed() differs per worker and epoch and follows
    seed_everything, so runs stay reproducible.
    """
    info = torch.utils.data.get_worker_info()
    info.dataset.transform.set_random_seed(torch.initial_seed() % 2**32)


class SegmentationDataModule(pl.LightningDataModule):
    def __init__(self, train_dir: Path, val_dir: Path, image_size: tuple[int, int], batch_size: int,
                 num_workers: int, seed: int):
        super().__init__()
        self.train_dir, self.val_dir = Path(train_dir), Path(val_dir)
        self.image_size, self.batch_size = tuple(image_size), batch_size
        self.num_workers, self.seed = num_workers, seed

    def setup(self, stage: str | None = None) -> None:
        self.train_set = SegmentationDataset(self.train_dir, train_transform(self.image_size, self.seed))
        self.val_set = SegmentationDataset(self.val_dir, eval_transform(self.image_size))
        if len(self.train_set) < 2:
            raise InputError(f"{self.train_dir}: {len(self.train_set)} usable image(s); training needs 2")

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        # drop_last: DeepLabV3+'s ASPP pooling has BatchNorm, which fails on a batch of 1 (SMP#778).
        batch = min(self.batch_size, len(dataset)) if train else self.batch_size
        return DataLoader(dataset, batch_size=batch, shuffle=train, drop_last=train,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          worker_init_fn=_reseed_worker if self.num_workers else None,
                          pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)
