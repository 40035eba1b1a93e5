"""The datasets, samplers and Lightning data module of training and selection.

Training reads a split's `fit` subset (its usable images less any holdout); the best epoch is
chosen on another split or on the training split's `holdout` subset. Training crops follow
`transforms.TrainAugment`; validation sees each image as evaluation and prediction do
(`transforms.inference_pair`).

Loader workers hand over uint8 images and masks; conversion to float and normalisation happen
after the batch reaches the model's device (`transforms.normalize`), where a GPU does them for
free and a quarter of the bytes cross the bus.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cocoseg.masks.split_folder import read_manifest
from cocoseg.shared.errors import InputError
from cocoseg.shared.processes import end_with_parent
from cocoseg.training.network import input_divisor
from cocoseg.training.samples import SplitFiles, SplitFolder, read_sample
from cocoseg.training.scaling import training_longest_side
from cocoseg.training.transforms import TrainAugment, as_tensor, inference_pair
from cocoseg.training.variants import Variant


def sample_generator(seed: int, rank: int, epoch: int, index: int) -> np.random.Generator:
    """The random stream of one training sample: a function of (run seed, process rank, epoch, image
    index), so each process draws its own augmentations, a rerun draws them again exactly, and the
    number of loader workers changes nothing."""
    return np.random.default_rng([seed, rank, epoch, index])


class TrainingSamples(Dataset):
    """A split's `fit` subset through `TrainAugment`, indexed by the keys `EpochShuffle` yields;
    read from `files` (default: the split folder's own, see `samples.split_files`)."""

    def __init__(self, split_dir: Path, variant: Variant, seed: int, files: SplitFiles | None = None):
        self.split_dir, self.variant, self.seed = Path(split_dir), variant, seed
        self.files = files or SplitFolder(split_dir)
        self.rows = read_manifest(split_dir, "fit")
        self.augment = TrainAugment(variant)
        self.files.check(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 image (HWC) and uint8 mask (HW) of key (index, epoch, rank); see `normalize`."""
        index, epoch, rank = key
        row = self.rows[index]
        original = (int(row["height"]), int(row["width"]))
        image, mask = read_sample(self.files, row, training_longest_side(*original, self.variant))
        image, mask = self.augment(image, mask, original, sample_generator(self.seed, rank, epoch, index))
        return as_tensor(image), torch.from_numpy(mask)


class SelectionSamples(Dataset):
    """A split subset as validation scores it during training: at inference scale (`inference_pair`)."""

    def __init__(self, split_dir: Path, variant: Variant, subset: str = "all", files: SplitFiles | None = None):
        self.split_dir, self.variant = Path(split_dir), variant
        self.files = files or SplitFolder(split_dir)
        self.rows = read_manifest(split_dir, subset)
        self.divisor = input_divisor(variant.architecture, variant.encoder)
        self.files.check(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = inference_pair(*read_sample(self.files, self.rows[index]), self.variant, self.divisor)
        return as_tensor(image), torch.from_numpy(mask)


def worker_start(worker_id: int) -> None:
    """Loader workers end with their parent (`end_with_parent`); augmentation needs no reseeding
    here, as every sample seeds its own generator (`sample_generator`)."""
    end_with_parent()


class EpochShuffle(Sampler):
    """Training order: a permutation of the split drawn from (seed, epoch), dealt out to the
    processes (rank, rank + world, ...) and cut to equal counts, as torch's DistributedSampler
    with drop_last does. Yields (index, epoch, rank), the keys `TrainingSamples` seeds from;
    Lightning calls `set_epoch` before each epoch.

    A run resumed inside an epoch starts at `start_epoch` and leaves out the first `skip` keys of
    that epoch (the samples it trained before it stopped): no image twice in it, none skipped.
    The order is drawn when `iter` is called, with the epoch set then: a loader's workers ask
    for keys before Lightning's first `set_epoch` of a resumed fit.
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1, start_epoch: int = 0,
                 skip: int = 0):
        self.size, self.seed, self.rank, self.world = size, seed, rank, world_size
        self.epoch, self.start_epoch, self.skip = start_epoch, start_epoch, skip

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size // self.world

    def __iter__(self):
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
        mine = order[: len(self) * self.world][self.rank:: self.world]
        skip = self.skip if self.epoch == self.start_epoch else 0
        return iter([(index, self.epoch, self.rank) for index in mine[skip:]])


def start_position(trainer: pl.Trainer | None, batches_per_epoch: int) -> tuple[int, int]:
    """The epoch a fit starts in and how many of its batches were trained already, from the loop
    progress Lightning restored from the checkpoint (0, 0 for a fresh run). A checkpoint written
    after an epoch's last batch starts the next epoch."""
    if trainer is None:
        return 0, 0
    epoch = trainer.fit_loop.epoch_progress.current.processed
    done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
    return (epoch + 1, 0) if done >= batches_per_epoch else (epoch, done)


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
    itself, so that validation under several processes sees each image exactly once and every
    process draws its own augmentations. Validation runs one image at a time under
    `short_side`, whose images differ in shape (each padded only to the architecture's divisor).
    """

    def __init__(self, train_dir: Path, val_dir: Path, variant: Variant, num_workers: int, val_subset: str = "all",
                 files: dict[Path, SplitFiles] | None = None):
        super().__init__()
        self.train_dir, self.val_dir, self.val_subset = Path(train_dir), Path(val_dir), val_subset
        self.files = files or {}  # where each split's samples are read, by split folder (default: the folder)
        self.variant, self.batch_size, self.seed = variant, variant.batch_size, variant.seed
        self.num_workers = num_workers

    def setup(self, stage: str | None = None) -> None:
        self.train_set = TrainingSamples(self.train_dir, self.variant, self.seed, self.files.get(self.train_dir))
        self.val_set = SelectionSamples(self.val_dir, self.variant, self.val_subset, self.files.get(self.val_dir))
        if len(self.train_set) < 2:
            raise InputError(f"{self.train_dir}: {len(self.train_set)} usable image(s); training needs 2")

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_batch_size(self) -> int:
        """The batch size, or fewer where the split is smaller than one batch per process."""
        return min(self.batch_size, len(self.train_set) // self._world()[1])

    def batches_per_epoch(self) -> int:
        """Training batches each process runs per epoch (incomplete batches are dropped)."""
        return len(self.train_set) // self._world()[1] // self.train_batch_size()

    def train_dataloader(self) -> DataLoader:
        rank, world = self._world()
        # drop_last: DeepLabV3+'s ASPP pooling has BatchNorm, which fails on a batch of 1 (SMP#778).
        batch = self.train_batch_size()
        if batch < self.batch_size and rank == 0:
            print(f"batch size {self.batch_size} is larger than the {len(self.train_set)} training images"
                  f"{f' over {world} processes' if world > 1 else ''}: batches of {batch}", file=sys.stderr, flush=True)
        batches_per_epoch = self.batches_per_epoch()
        epoch, done = start_position(self.trainer, batches_per_epoch)
        if done and rank == 0:
            print(f"resuming epoch {epoch + 1} at batch {done + 1} of {batches_per_epoch}", file=sys.stderr, flush=True)
        sampler = EpochShuffle(len(self.train_set), self.seed, rank, world, start_epoch=epoch, skip=done * batch)
        return self._loader(self.train_set, batch, sampler=sampler, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        rank, world = self._world()
        batch = self.batch_size if self.variant.resize == "fit" else 1
        return self._loader(self.val_set, batch, sampler=EachOnceSampler(len(self.val_set), rank, world))

    def _loader(self, dataset: Dataset, batch_size: int, **kwargs) -> DataLoader:
        workers = self.num_workers
        return DataLoader(dataset, batch_size=batch_size, num_workers=workers, persistent_workers=workers > 0,
                          prefetch_factor=4 if workers else None, worker_init_fn=worker_start if workers else None,
                          pin_memory=torch.cuda.is_available(), **kwargs)
