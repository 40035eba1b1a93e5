"""Loading split folders (see `splitfolder`) for training, selection and evaluation.

Training reads a split's `fit` subset (its usable images less any holdout); the best epoch is
chosen on another split or on the training split's `holdout` subset.

Loader workers hand over uint8 images and masks; conversion to float and normalisation happen
after the batch reaches the model's device (`normalize`), where a GPU does them for free and
a quarter of the bytes cross the bus.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations calls home at import

import albumentations as A
import cv2
import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from .common import IGNORE, InputError
from .decode import is_reduced, read_rgb
from .processes import end_with_parent
from .splitfolder import read_manifest

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet, as the encoders expect

# Loader workers already fill the job's CPUs: an OpenCV thread pool in each would oversubscribe
# them. Set here, before any worker is forked: changing it inside a forked worker can deadlock.
cv2.setNumThreads(1)


# albumentations' Normalize arithmetic, in float32: (pixel - 255 mean) * 1 / (255 std).
_SHIFT = torch.from_numpy(np.array(MEAN, dtype=np.float32) * 255).view(1, 3, 1, 1)
_SCALE = torch.from_numpy(np.reciprocal(np.array(STD, dtype=np.float32) * 255)).view(1, 3, 1, 1)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC images -> float32 NCHW normalised with ImageNet's mean and std, on their own device.

    The same float32 operations as albumentations' Normalize, so the numbers are bit for bit
    those of a loader that normalises on the CPU. Loaders hand over HWC as decoded (no
    transposing copy in the worker); the result is channels-last in memory, as the models run.
    """
    images = images.permute(0, 3, 1, 2)
    return (images.float() - _SHIFT.to(images.device)) * _SCALE.to(images.device)


def as_tensor(image: np.ndarray) -> torch.Tensor:
    """HWC uint8 array -> contiguous HWC uint8 tensor, which batches with a plain copy."""
    return torch.from_numpy(np.ascontiguousarray(image))


def load_mask(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im)


def _missing(split_dir: Path, folder: str, name: str) -> InputError:
    return InputError(f"{split_dir}: {folder}/{name}: missing (rerun the mask stage)")


def check_files_exist(split_dir: Path, rows: list[dict]) -> None:
    """Stop before any work when a listed file has gone (a stat each: cheap next to decoding)."""
    for row in rows:
        for folder, name in (("images", row["file_name"]), ("masks", row["mask"])):
            if not (Path(split_dir) / folder / name).exists():
                raise _missing(split_dir, folder, name)


def _read(split_dir: Path, folder: str, name: str, load):
    try:
        return load(Path(split_dir) / folder / name)
    except InputError:
        raise
    except FileNotFoundError:  # gone since `check_files_exist`
        raise _missing(split_dir, folder, name) from None
    except Exception as e:  # truncated, not an image, unreadable
        raise InputError(f"{split_dir}: {folder}/{name}: unreadable ({e})") from None


def _check_size(split_dir: Path, folder: str, name: str, width: int, height: int, row: dict) -> None:
    if (width, height) != (int(row["width"]), int(row["height"])):
        raise InputError(f"{split_dir}: {folder}/{name}: differs from the manifest in size ({width}x{height}, "
                         f"not {row['width']}x{row['height']}; rerun the mask stage)")


def load_sample(split_dir: Path, row: dict, reduce_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Image and mask of one manifest row; InputError naming the file when either went bad.

    Files can change after the mask stage (deleted, cut short, replaced): the run stops with one
    line rather than train on, or score, something other than what the manifest lists.
    With `reduce_to`, an image whose longest side is at least twice that (`is_reduced`) comes
    back with its mask at longest side `reduce_to` (JPEGs decoded reduced, see `read_rgb`;
    area-averaged image, nearest-label mask), as training needs no more.
    """
    image, (width, height) = _read(split_dir, "images", row["file_name"], lambda path: read_rgb(path, reduce_to))
    _check_size(split_dir, "images", row["file_name"], width, height, row)
    mask = _read(split_dir, "masks", row["mask"], load_mask)
    _check_size(split_dir, "masks", row["mask"], mask.shape[1], mask.shape[0], row)
    if is_reduced(width, height, reduce_to):
        scale = reduce_to / max(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
    return image, mask


RANDOM_SCALE = 0.25  # training scales images by 1 +- this around the variant's size


def train_longest_side(size: tuple[int, int]) -> int:
    """The longest image side training can use: the variant's size at the largest random scale."""
    return math.ceil(max(size) * (1 + RANDOM_SCALE))


def fitted_size(height: int, width: int, size: tuple[int, int]) -> tuple[int, int]:
    """The (height, width) an image takes when fitted inside `size` keeping its aspect ratio.

    The same arithmetic as albumentations' `LongestMaxSize(max_size_hw=size)`, which the
    transforms use; prediction uses it to crop the padding back off.
    """
    scale = min(size[0] / height, size[1] / width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def train_transform(size: tuple[int, int], seed: int) -> A.Compose:
    """Fit inside the variant's size, scale at random around it, pad with ignore, crop, flip, mild
    colour jitter. Fitting as evaluation does keeps the two at the same scale, portrait or landscape."""
    height, width = size
    return A.Compose([
        A.LongestMaxSize(max_size_hw=(height, width)),
        A.RandomScale(scale_limit=(-RANDOM_SCALE, RANDOM_SCALE), p=1.0),
        A.PadIfNeeded(min_height=height, min_width=width, border_mode=cv2.BORDER_CONSTANT,
                      fill=0, fill_mask=IGNORE),
        A.RandomCrop(height=height, width=width),
        A.HorizontalFlip(p=0.5),
        A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5),
    ], seed=seed)


def eval_transform(size: tuple[int, int]) -> A.Compose:
    """Fit inside the variant's (height, width) keeping the aspect ratio (`fitted_size`), then pad
    bottom-right to exactly that size, so every image of a split shares one shape.

    Padding at the bottom-right keeps the image at the top-left, so predictions are cropped
    back with a slice; padded mask pixels are 255 and never counted.
    """
    height, width = size
    return A.Compose([
        A.LongestMaxSize(max_size_hw=(height, width)),
        A.PadIfNeeded(min_height=height, min_width=width, position="top_left",
                      border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=IGNORE),
    ])


class SegmentationDataset(Dataset):
    """A split's images and masks through `transform`; `reduce_to` as in `load_sample`."""

    def __init__(self, split_dir: Path, transform: A.Compose, subset: str = "all", reduce_to: int | None = None):
        self.split_dir = Path(split_dir)
        self.rows = read_manifest(split_dir, subset)
        self.transform, self.reduce_to = transform, reduce_to
        check_files_exist(self.split_dir, self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 image (HWC) and uint8 mask (HW); see `normalize`."""
        image, mask = load_sample(self.split_dir, self.rows[index], self.reduce_to)
        out = self.transform(image=image, mask=mask)
        return as_tensor(out["image"]), torch.from_numpy(out["mask"])


def reseed_worker(worker_id: int) -> None:
    """Give each loader worker its own augmentation stream, derived from the run's seed, and end
    it with its parent (`end_with_parent`).

    albumentations' Compose keeps its own generator; without this every worker would repeat
    the same augmentations. torch.initial_seed() differs per worker and epoch and follows
    seed_everything, so runs stay reproducible.
    """
    end_with_parent()
    info = torch.utils.data.get_worker_info()
    info.dataset.transform.set_random_seed(torch.initial_seed() % 2**32)


class EachOnceSampler(Sampler):
    """Indices rank, rank + world, ...: every image on exactly one process, none repeated.

    torch's DistributedSampler pads the split so that every process gets as many images,
    which would count some validation images twice in the summed confusion matrix.
    """

    def __init__(self, size: int, rank: int, world_size: int):
        self.indices = range(rank, size, world_size)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class SegmentationDataModule(pl.LightningDataModule):
    """Training on `train_dir`'s fit subset; the best epoch chosen on `val_dir`'s `val_subset`.

    The trainer must run with `use_distributed_sampler=False`: this module places the samplers
    itself, so that validation under several processes sees each image exactly once.
    """

    def __init__(self, train_dir: Path, val_dir: Path, image_size: tuple[int, int], batch_size: int,
                 num_workers: int, seed: int, val_subset: str = "all"):
        super().__init__()
        self.train_dir, self.val_dir, self.val_subset = Path(train_dir), Path(val_dir), val_subset
        self.image_size, self.batch_size = tuple(image_size), batch_size
        self.num_workers, self.seed = num_workers, seed

    def setup(self, stage: str | None = None) -> None:
        self.train_set = SegmentationDataset(self.train_dir, train_transform(self.image_size, self.seed), "fit",
                                             reduce_to=train_longest_side(self.image_size))
        self.val_set = SegmentationDataset(self.val_dir, eval_transform(self.image_size), self.val_subset)
        if len(self.train_set) < 2:
            raise InputError(f"{self.train_dir}: {len(self.train_set)} usable image(s); training needs 2")

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        rank, world = self._world()
        # drop_last: DeepLabV3+'s ASPP pooling has BatchNorm, which fails on a batch of 1 (SMP#778).
        batch = min(self.batch_size, len(self.train_set) // world)
        if batch < self.batch_size and rank == 0:
            print(f"batch size {self.batch_size} is larger than the {len(self.train_set)} training images"
                  f"{f' over {world} processes' if world > 1 else ''}: batches of {batch}", file=sys.stderr, flush=True)
        sampler = DistributedSampler(self.train_set, world, rank, shuffle=True, seed=self.seed,
                                     drop_last=True) if world > 1 else None
        return self._loader(self.train_set, batch, sampler=sampler, shuffle=sampler is None, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        rank, world = self._world()
        return self._loader(self.val_set, self.batch_size, sampler=EachOnceSampler(len(self.val_set), rank, world))

    def _loader(self, dataset: Dataset, batch_size: int, **kwargs) -> DataLoader:
        workers = self.num_workers
        return DataLoader(dataset, batch_size=batch_size, num_workers=workers, persistent_workers=workers > 0,
                          prefetch_factor=4 if workers else None, worker_init_fn=reseed_worker if workers else None,
                          pin_memory=torch.cuda.is_available(), **kwargs)
