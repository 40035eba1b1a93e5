"""The loader hands over uint8; normalisation on the device gives the float loader's numbers exactly."""

import os

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from albumentations.pytorch import ToTensorV2
from conftest import COCO_REAL, ann
from PIL import Image

from cocoseg.masks.convert import convert
from cocoseg.masks.demo import make_demo
from cocoseg.masks.split_folder import read_labels, read_manifest
from cocoseg.shared.errors import InputError
from cocoseg.shared.image_decoding import load_rgb
from cocoseg.training.data import SelectionSamples, TrainingSamples
from cocoseg.training.samples import load_sample
from cocoseg.training.transforms import MEAN, STD, normalize
from cocoseg.training.variants import Variant

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def test_device_normalisation_equals_the_float_loader(tmp_path):
    """Images leave the workers as uint8; normalised on the device they equal albumentations'
    Normalize + ToTensorV2 in a worker, bit for bit, for training crops and validation images."""
    make_demo(tmp_path / "demo", {"train": 6}, seed=1)
    convert(tmp_path / "demo" / "annotations" / "train.json", tmp_path / "demo" / "images" / "train", tmp_path / "s")
    float_path = A.Compose([A.Normalize(mean=MEAN, std=STD), ToTensorV2()])
    variant = Variant(image_size=64, seed=7)
    training, selection = TrainingSamples(tmp_path / "s", variant, 7), SelectionSamples(tmp_path / "s", variant)
    items = [training[(i, 0, 0)] for i in range(len(training))] + [selection[i] for i in range(len(selection))]
    for image, mask in items:
        assert image.dtype == torch.uint8 and mask.dtype == torch.uint8 and image.shape[-1] == 3
        assert torch.equal(normalize(image[None])[0], float_path(image=image.numpy())["image"])  # bit for bit


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


def _large_split(tmp_path, coco_dir, factor: int):
    """One real photo enlarged `factor` times, with one rectangle of category 17."""
    with Image.open(COCO_REAL / "images" / "000000005001.jpg") as im:
        large = im.resize((im.width * factor, im.height * factor), Image.BILINEAR)
    width, height = large.size
    entry = {"id": 1, "file_name": "large.jpg", "width": width, "height": height}
    polygon = [w * factor for w in (40, 40, 300, 40, 300, 200, 40, 200)]
    path, images = coco_dir([entry], [ann(1, 1, 17, [polygon])], make_files=False)
    large.save(images / "large.jpg", quality=92)
    convert(path, images, tmp_path / "split")
    return tmp_path / "split", read_manifest(tmp_path / "split")[0]


def test_large_images_decode_reduced_for_training_with_their_mask_aligned(tmp_path, coco_dir):
    split, row = _large_split(tmp_path, coco_dir, factor=4)  # 2560x1920
    image, mask = load_sample(split, row, reduce_to=640)
    assert image.shape == (480, 640, 3) and mask.shape == (480, 640)
    full_image, full_mask = load_sample(split, row)
    assert full_image.shape == (1920, 2560, 3)
    expected_mask = cv2.resize(full_mask, (640, 480), interpolation=cv2.INTER_NEAREST)
    assert np.array_equal(mask, expected_mask)  # the labels sit where they did
    label = next(int(row["label"]) for row in read_labels(split) if row["category_id"] == "17")
    assert set(np.unique(mask)) == {0, label} and abs((mask == label).sum() / (260 * 160) - 1) < 0.02
    expected_image = cv2.resize(full_image, (640, 480), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(image.astype(int) - expected_image).mean() < 2  # DCT-scaled decode: the same picture


def test_images_below_twice_the_training_size_decode_in_full(tmp_path, coco_dir):
    split, row = _large_split(tmp_path, coco_dir, factor=2)  # 1280x960: longest side < 2 x 700
    image, mask = load_sample(split, row, reduce_to=700)
    full_image, full_mask = load_sample(split, row)
    assert np.array_equal(image, full_image) and np.array_equal(mask, full_mask)


def test_a_replaced_image_is_refused_also_when_decoded_reduced(tmp_path, coco_dir):
    split, row = _large_split(tmp_path, coco_dir, factor=4)
    with Image.open(split / "images" / row["file_name"]) as im:  # the same picture at half the size
        half = im.resize((im.width // 2, im.height // 2))
    (split / "images" / row["file_name"]).unlink()  # a symlink to the source: replace the link, not the source
    half.save(split / "images" / row["file_name"], quality=92)
    with pytest.raises(InputError, match="images/large.jpg: differs from the manifest in size"):
        load_sample(split, row, reduce_to=640)


def test_each_process_draws_its_own_augmentations_and_a_rerun_draws_them_again(tmp_path):
    """Under two processes every image goes to one rank per epoch, an image's crop depends on the
    rank that draws it, the same key gives the same bytes, and loader workers change nothing."""
    from torch.utils.data import DataLoader

    from cocoseg.training.data import EpochShuffle, worker_start

    make_demo(tmp_path / "demo", {"train": 9}, seed=3)
    convert(tmp_path / "demo" / "annotations" / "train.json", tmp_path / "demo" / "images" / "train", tmp_path / "s")
    samples = TrainingSamples(tmp_path / "s", Variant(image_size=64, seed=4), 4)
    ranks = [EpochShuffle(len(samples), 4, rank, 2) for rank in (0, 1)]
    for sampler in ranks:
        sampler.set_epoch(1)
    keys = [list(sampler) for sampler in ranks]
    indices = [[index for index, _, _ in rank_keys] for rank_keys in keys]
    assert not set(indices[0]) & set(indices[1]) and len(indices[0]) == len(indices[1]) == len(samples) // 2
    assert all(epoch == 1 and rank == r for r, rank_keys in enumerate(keys) for _, epoch, rank in rank_keys)
    image = indices[0][0]
    crops = [samples[image, 1, rank][0] for rank in (0, 1)]
    assert not torch.equal(*crops)  # the same image, another rank: another augmentation
    assert torch.equal(samples[image, 1, 0][0], crops[0])  # drawn again: the same bytes
    assert not torch.equal(samples[image, 2, 0][0], crops[0])  # the next epoch draws anew
    batches = [list(DataLoader(samples, batch_size=2, sampler=ranks[0], num_workers=workers,
                               worker_init_fn=worker_start if workers else None)) for workers in (0, 2)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(*batches))


def test_a_sampler_resumed_inside_an_epoch_yields_the_rest_of_that_epoch_then_whole_epochs():
    from cocoseg.training.data import EpochShuffle

    def epoch_keys(epoch, rank):
        sampler = EpochShuffle(23, 7, rank, 2)
        sampler.set_epoch(epoch)
        return list(sampler)

    for rank in (0, 1):
        resumed = EpochShuffle(23, 7, rank, 2, start_epoch=3, skip=4)
        rest = list(resumed)  # a loader's workers ask before Lightning's set_epoch: the epoch is the start one
        resumed.set_epoch(3)
        assert rest == list(resumed) == epoch_keys(3, rank)[4:]  # the 4 trained before the stop left out
        resumed.set_epoch(4)
        assert list(resumed) == epoch_keys(4, rank)  # the next epoch whole


def test_a_crop_where_one_label_covers_most_is_drawn_again():
    """A mask that is background but for one square: crops are retried until the square is in view."""
    from cocoseg.training.transforms import crop_origin

    mask = np.zeros((400, 400), np.uint8)
    mask[300:370, 300:370] = 1
    rng = np.random.default_rng(0)
    shares = []
    for _ in range(200):
        top, left = crop_origin(mask, (100, 100), 0.75, rng)
        crop = mask[top: top + 100, left: left + 100]
        shares.append((crop == 1).mean())
    anywhere = np.random.default_rng(0)
    unretried = [(mask[t: t + 100, l: l + 100] == 1).mean()
                 for t, l in (crop_origin(mask, (100, 100), 1.0, anywhere) for _ in range(200))]
    balanced = np.mean([0.25 < share for share in shares])  # background under 75%
    assert balanced > 0.2 and balanced > 5 * np.mean([0.25 < share for share in unretried])


@pytest.mark.parametrize("scaled, top, left", [((683, 911), 100, 200), ((256, 341), 0, 0), ((960, 1280), 300, 500)])
def test_the_training_warp_gives_the_pixels_of_resizing_padding_and_cropping(scaled, top, left):
    """One warp straight into the crop, against OpenCV's resize of the whole image, centred in
    padding where it is smaller than the crop, then cropped: within one grey level."""
    from cocoseg.training.transforms import warp_into_crop

    image = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (480, 640, 3)).astype(np.uint8), (0, 0), 3)
    canvas = np.zeros((max(scaled[0], 512), max(scaled[1], 512), 3), np.uint8)
    shift = ((canvas.shape[0] - scaled[0]) // 2, (canvas.shape[1] - scaled[1]) // 2)
    canvas[shift[0]: shift[0] + scaled[0], shift[1]: shift[1] + scaled[1]] = cv2.resize(image, scaled[::-1])
    expected = canvas[top: top + 512, left: left + 512].astype(int)
    warped = warp_into_crop(image, scaled, (shift[0] - top, shift[1] - left), (512, 512)).astype(int)
    assert np.abs(warped - expected).max() <= 1


def test_the_data_module_deals_each_process_its_own_images_and_draws(tmp_path):
    """The training loader of rank 0 and of rank 1 (as Lightning's trainer reports them) read
    different images with augmentations seeded by their own rank; a rerun reads the same bytes."""
    from types import SimpleNamespace

    from cocoseg.training.data import SegmentationDataModule

    make_demo(tmp_path / "demo", {"train": 8}, seed=5)
    convert(tmp_path / "demo" / "annotations" / "train.json", tmp_path / "demo" / "images" / "train", tmp_path / "s")

    def first_epoch(rank: int) -> tuple[list[tuple[int, int, int]], list[torch.Tensor]]:
        data = SegmentationDataModule(tmp_path / "s", tmp_path / "s", Variant(image_size=64, batch_size=2, seed=1),
                                      num_workers=0)
        fresh = SimpleNamespace(current=SimpleNamespace(processed=0))  # a fit's loop progress at its start
        data.trainer = SimpleNamespace(global_rank=rank, world_size=2, fit_loop=SimpleNamespace(
            epoch_progress=fresh, epoch_loop=SimpleNamespace(batch_progress=fresh)))
        data.setup()
        loader = data.train_dataloader()
        return list(loader.sampler), [images for images, _ in loader]

    (keys0, images0), (keys1, _) = first_epoch(0), first_epoch(1)
    assert {rank for _, _, rank in keys0} == {0} and {rank for _, _, rank in keys1} == {1}
    assert not {index for index, _, _ in keys0} & {index for index, _, _ in keys1}
    assert all(torch.equal(a, b) for a, b in zip(images0, first_epoch(0)[1]))  # a rerun: the same crops
