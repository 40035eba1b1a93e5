"""Loading split folders (see `splitfolder`) for training, selection and evaluation.

Training reads a split's `fit` subset (its usable images less any holdout); the best epoch is
chosen on another split or on the training split's `holdout` subset.

Training crops follow `TrainAugment` (the scale recipe of `scaling`); validation sees each image
as evaluation and prediction do (`inference_pair`).

Loader workers hand over uint8 images and masks; conversion to float and normalisation happen
after the batch reaches the model's device (`normalize`), where a GPU does them for free and
a quarter of the bytes cross the bus.
"""

from __future__ import annotations

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
from torch.utils.data import DataLoader, Dataset, Sampler

from cocoseg.masks.split_folder import read_manifest
from cocoseg.shared.errors import InputError
from cocoseg.shared.image_decoding import is_reduced, read_rgb
from cocoseg.shared.labels import IGNORE
from cocoseg.shared.processes import end_with_parent
from cocoseg.training.network import input_divisor
from cocoseg.training.scaling import base_scale, inference_size, padded_size, scaled_size, training_longest_side
from cocoseg.training.variants import Variant

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet, as the encoders expect

# Loader workers already fill the job's CPUs: an OpenCV thread pool in each would oversubscribe
# them. Set here, before any worker is forked: changing it inside a forked worker can deadlock.
cv2.setNumThreads(1)


# albumentations' Normalize arithmetic, in float32: (pixel - 255 mean) * 1 / (255 std).
_SHIFT = torch.from_numpy(np.array(MEAN, dtype=np.float32) * 255).view(1, 3, 1, 1)
_SCALE = torch.from_numpy(np.reciprocal(np.array(STD, dtype=np.float32) * 255)).view(1, 3, 1, 1)


def normalize_pixels(images: torch.Tensor) -> torch.Tensor:
    """float NCHW images in 0-255 -> normalised with ImageNet's mean and std, on their own device:
    the one normalisation of training, evaluation and an exported model.

    The same float32 operations as albumentations' Normalize, so the numbers are bit for bit
    those of a loader that normalises on the CPU.
    """
    return (images - _SHIFT.to(images.device)) * _SCALE.to(images.device)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC images -> float32 NCHW, normalised (`normalize_pixels`).

    Loaders hand over HWC as decoded (no transposing copy in the worker); the result is
    channels-last in memory, as the models run.
    """
    return normalize_pixels(images.permute(0, 3, 1, 2).float())


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


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` at `size` (height, width), bilinear; as it is when it already has that size."""
    if image.shape[:2] == tuple(size):
        return image
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def resize_pair(image: np.ndarray, mask: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Image (bilinear) and mask (nearest label) at `size` (height, width)."""
    if mask.shape[:2] != tuple(size):
        mask = cv2.resize(mask, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return resize_image(image, size), mask


def pad_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` padded with 0 to at least `size`, bottom-right."""
    return _pad(image, size, 0, centred=False)


def pad_pair(image: np.ndarray, mask: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Image padded with 0 and mask with ignore to at least `size`, bottom-right: padded pixels are
    never counted, and the padding is cropped back off with a slice."""
    return _pad(image, size, 0, centred=False), _pad(mask, size, IGNORE, centred=False)


def _pad(array: np.ndarray, size: tuple[int, int], fill: int, centred: bool) -> np.ndarray:
    extra_h, extra_w = max(0, size[0] - array.shape[0]), max(0, size[1] - array.shape[1])
    if not extra_h and not extra_w:
        return array
    top, left = (extra_h // 2, extra_w // 2) if centred else (0, 0)
    border = (top, extra_h - top, left, extra_w - left)
    return cv2.copyMakeBorder(array, *border, cv2.BORDER_CONSTANT, value=(fill,) * 3 if array.ndim == 3 else fill)


CROP_TRIES = 10  # MMSegmentation's RandomCrop: crops drawn before one with cat_max_ratio is taken as is
SHARE_STRIDE = 4  # label shares are counted on every 4th pixel each way: 1/16 of the work, the same verdict


def crop_origin(mask: np.ndarray, size: tuple[int, int], max_share: float, rng: np.random.Generator
                ) -> tuple[int, int]:
    """(top, left) of a random `size` crop of `mask` in which no label covers more than `max_share`
    of the labelled (non-ignore) pixels and at least two labels are present: up to `CROP_TRIES`
    draws, then the last one (MMSegmentation's `cat_max_ratio`). A share of 1 takes any crop.
    Shares are counted on a `SHARE_STRIDE` grid: a crop's label shares, not its outlines, decide."""
    height, width = size
    for _ in range(CROP_TRIES):
        top = int(rng.integers(0, mask.shape[0] - height + 1))
        left = int(rng.integers(0, mask.shape[1] - width + 1))
        if max_share >= 1:
            break
        crop = mask[top: top + height: SHARE_STRIDE, left: left + width: SHARE_STRIDE]
        counts = np.bincount(crop[crop != IGNORE])
        counts = counts[counts > 0]
        if len(counts) > 1 and counts.max() / counts.sum() < max_share:
            break
    return top, left


class TrainAugment:
    """The training recipe: scale to the base scale (`scaling.base_scale`) times a random ratio
    from `scale_range`, pad with ignore only where the scaled image is smaller than the crop, crop
    the variant's size where no label dominates (`crop_origin`), flip half the time, jitter colour.

    The crop is chosen on the scaled mask; the image is resampled straight into the crop (one
    affine warp, the same bilinear sampling as resizing the whole image and cropping it), so a
    scale of 2 costs no more than a scale of 1. Every draw comes from the generator passed in, so
    a sample's augmentation is a function of its key (`sample_generator`): the same whatever the
    number of loader workers.
    """

    def __init__(self, variant: Variant):
        self.variant = variant
        self.jitter = A.Compose([A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5)])

    def __call__(self, image: np.ndarray, mask: np.ndarray, original: tuple[int, int],
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """`original`: the file's (height, width), which the scale refers to (`image` may be a reduced decode)."""
        crop_h, crop_w = self.variant.image_size
        ratio = rng.uniform(*self.variant.scale_range)
        scaled = scaled_size(*original, base_scale(*original, self.variant) * ratio)
        canvas = (max(scaled[0], crop_h), max(scaled[1], crop_w))
        shift = ((canvas[0] - scaled[0]) // 2, (canvas[1] - scaled[1]) // 2)  # the scaled image, centred
        labels = cv2.resize(mask, scaled[::-1], interpolation=cv2.INTER_NEAREST)
        labels = _pad(labels, canvas, IGNORE, centred=True)
        top, left = crop_origin(labels, (crop_h, crop_w), self.variant.crop_max_share, rng)
        mask = labels[top: top + crop_h, left: left + crop_w]
        image = warp_into_crop(image, scaled, (shift[0] - top, shift[1] - left), (crop_h, crop_w))
        if rng.random() < 0.5:
            image, mask = image[:, ::-1], mask[:, ::-1]
        self.jitter.set_random_seed(int(rng.integers(2**32)))
        return self.jitter(image=np.ascontiguousarray(image))["image"], np.ascontiguousarray(mask)


def warp_into_crop(image: np.ndarray, scaled: tuple[int, int], offset: tuple[int, int],
                   size: tuple[int, int]) -> np.ndarray:
    """The `size` window of `image` resized to `scaled` (height, width) and placed at `offset`
    (top, left) within the window, in one bilinear warp: pixel centres map as `cv2.resize` maps
    them; outside the scaled image, 0."""
    scale_y, scale_x = scaled[0] / image.shape[0], scaled[1] / image.shape[1]
    matrix = np.array([[scale_x, 0, 0.5 * scale_x - 0.5 + offset[1]],
                       [0, scale_y, 0.5 * scale_y - 0.5 + offset[0]]])
    return cv2.warpAffine(image, matrix, (size[1], size[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def inference_input(image: np.ndarray, variant: Variant, divisor: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The image as the network sees it whole (`scaling.inference_size`, padded bottom-right to
    `scaling.padded_size`), and the (height, width) of the image within it."""
    size = inference_size(*image.shape[:2], variant)
    return pad_image(resize_image(image, size), padded_size(*size, variant, divisor)), size


def inference_pair(image: np.ndarray, mask: np.ndarray, variant: Variant,
                   divisor: int) -> tuple[np.ndarray, np.ndarray]:
    """Image and mask as `inference_input` gives the image (the mask padded with ignore): what
    validation scores during training."""
    size = inference_size(*image.shape[:2], variant)
    image, mask = resize_pair(image, mask, size)
    return pad_pair(image, mask, padded_size(*size, variant, divisor))


def sample_generator(seed: int, rank: int, epoch: int, index: int) -> np.random.Generator:
    """The random stream of one training sample: a function of (run seed, process rank, epoch, image
    index), so each process draws its own augmentations, a rerun draws them again exactly, and the
    number of loader workers changes nothing."""
    return np.random.default_rng([seed, rank, epoch, index])


class TrainingSamples(Dataset):
    """A split's `fit` subset through `TrainAugment`, indexed by the keys `EpochShuffle` yields."""

    def __init__(self, split_dir: Path, variant: Variant, seed: int):
        self.split_dir, self.variant, self.seed = Path(split_dir), variant, seed
        self.rows = read_manifest(split_dir, "fit")
        self.augment = TrainAugment(variant)
        check_files_exist(self.split_dir, self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 image (HWC) and uint8 mask (HW) of key (index, epoch, rank); see `normalize`."""
        index, epoch, rank = key
        row = self.rows[index]
        original = (int(row["height"]), int(row["width"]))
        image, mask = load_sample(self.split_dir, row, training_longest_side(*original, self.variant))
        image, mask = self.augment(image, mask, original, sample_generator(self.seed, rank, epoch, index))
        return as_tensor(image), torch.from_numpy(mask)


class SelectionSamples(Dataset):
    """A split subset as validation scores it during training: at inference scale (`inference_pair`)."""

    def __init__(self, split_dir: Path, variant: Variant, subset: str = "all"):
        self.split_dir, self.variant = Path(split_dir), variant
        self.rows = read_manifest(split_dir, subset)
        self.divisor = input_divisor(variant.architecture, variant.encoder)
        check_files_exist(self.split_dir, self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = inference_pair(*load_sample(self.split_dir, self.rows[index]), self.variant, self.divisor)
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

    def __init__(self, train_dir: Path, val_dir: Path, variant: Variant, num_workers: int, val_subset: str = "all"):
        super().__init__()
        self.train_dir, self.val_dir, self.val_subset = Path(train_dir), Path(val_dir), val_subset
        self.variant, self.batch_size, self.seed = variant, variant.batch_size, variant.seed
        self.num_workers = num_workers

    def setup(self, stage: str | None = None) -> None:
        self.train_set = TrainingSamples(self.train_dir, self.variant, self.seed)
        self.val_set = SelectionSamples(self.val_dir, self.variant, self.val_subset)
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
