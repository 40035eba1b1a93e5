"""A trained model as a file another runtime loads: ONNX (checked with onnxruntime) or TorchScript.

The exported network takes what a service has at hand: float32 RGB in 0-255, (batch, 3, height,
width), any batch and any height and width that divide by the architecture's input divisor; it
normalises inside (ImageNet mean and std, as training did) and returns logits (batch, classes,
height, width). `labels.csv` beside it maps each logit channel to a class.

Each export is checked in the same call: the exported file runs on the check inputs and its
logits are compared with PyTorch's; the agreement of the argmax (the predicted mask) must reach
`AGREEMENT`, and `export.json` records it with the largest logit difference.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from cocoseg.masks.split_folder import read_manifest, write_label_map
from cocoseg.shared.errors import InputError, first_line
from cocoseg.shared.files import atomic_path, write_json
from cocoseg.training.model_file import load_trained
from cocoseg.training.network import input_divisor
from cocoseg.training.samples import load_sample
from cocoseg.training.scaling import LONG_SIDE_LIMIT, base_length
from cocoseg.training.transforms import inference_input, normalize_pixels
from cocoseg.training.variants import Variant

FORMATS = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}
AGREEMENT = 0.999  # share of pixels whose predicted class must match PyTorch's


class ImagesToLogits(torch.nn.Module):
    """RGB in 0-255 -> logits: the model with its input normalisation."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(normalize_pixels(images))


def split_images(split_dir: Path, variant: Variant, divisor: int, count: int) -> list[np.ndarray]:
    """The first `count` images of a mask-stage split as the network sees them when it predicts
    (`transforms.inference_input`: at the variant's inference scale, padded to its divisor)."""
    return [inference_input(load_sample(split_dir, row)[0], variant, divisor)[0]
            for row in read_manifest(split_dir)[:count]]


def scale_description(variant: Variant, divisor: int) -> str:
    """How to size an image for the exported model as evaluation scored it (`scaling`)."""
    if variant.resize == "fit":
        size = "x".join(map(str, variant.image_size))
        return f"fit inside {size} (height x width) keeping the aspect ratio, bilinear; pad bottom-right to {size}"
    base = base_length(variant)
    return (f"short side to {base} px (long side at most {LONG_SIDE_LIMIT * base}) keeping the aspect ratio, "
            f"bilinear; pad bottom-right to multiples of {divisor}; scale the logits back to the image's size")


def check_inputs(size: tuple[int, int], divisor: int, images: list[np.ndarray], seed: int = 0) -> list[torch.Tensor]:
    """Batches to compare runtimes on: each given image (HWC uint8, as `split_images` gives them)
    alone, and a random batch of two at a size other than the variant's, so a fixed shape shows."""
    generator = torch.Generator().manual_seed(seed)
    other = (size[0] + divisor * max(1, 32 // divisor), size[1])
    batches = [torch.from_numpy(image)[None].permute(0, 3, 1, 2).float().contiguous() for image in images]
    return [*batches, torch.rand((2, 3, *other), generator=generator) * 255]


def _save(network: ImagesToLogits, example: torch.Tensor, fmt: str, path: Path) -> None:
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and exporter notices, not faults: the check decides
        if fmt == "onnx":
            dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height"), 3: torch.export.Dim("width")}
            program = torch.onnx.export(network, (example,), dynamo=True, input_names=["images"],
                                        output_names=["logits"], dynamic_shapes={"images": dims}, verbose=False)
            program.save(str(tmp))
        else:
            torch.jit.trace(network, example, check_trace=False).save(str(tmp))


def _runner(fmt: str, path: Path):
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda batch: session.run(None, {"images": batch.numpy()})[0]
    loaded = torch.jit.load(str(path), map_location="cpu")
    return lambda batch: loaded(batch).detach().numpy()


def compare(network: ImagesToLogits, run, batches: list[torch.Tensor]) -> dict:
    """The exported runner against PyTorch on `batches`: argmax agreement and largest logit gap."""
    agree, pixels, gap = 0, 0, 0.0
    with torch.inference_mode():
        for batch in batches:
            expected = network(batch).numpy()
            got = run(batch)
            if got.shape != expected.shape:
                raise InputError(f"the exported model gives logits of shape {got.shape}, PyTorch {expected.shape}")
            agree += int((got.argmax(1) == expected.argmax(1)).sum())
            pixels += expected.shape[0] * expected.shape[2] * expected.shape[3]
            gap = max(gap, float(np.abs(got - expected).max()))
    return {"batches": [list(b.shape) for b in batches], "argmax_agreement": agree / pixels,
            "max_logit_difference": gap}


def export(model_path: Path, fmt: str, output_dir: Path, check_split: Path | None = None, check_images: int = 4
           ) -> dict:
    """Write the exported model, `labels.csv` and `export.json` (format, input, check) under
    `output_dir`; InputError when the export fails or its logits disagree with PyTorch's.
    `check_split`: a mask-stage split whose first `check_images` images join the check."""
    model, variant, labels, epoch = load_trained(model_path, "cpu")
    network = ImagesToLogits(model).eval()
    divisor = input_divisor(variant.architecture, variant.encoder)
    images = split_images(check_split, variant, divisor, check_images) if check_split else []
    batches = check_inputs(variant.image_size, divisor, images)
    output_dir = Path(output_dir)
    path = output_dir / FORMATS[fmt]
    try:
        _save(network, batches[-1][:1], fmt, path)
        check = compare(network, _runner(fmt, path), batches)
    except InputError:
        raise
    except Exception as e:  # what the exporter or runtime cannot do with this architecture
        raise InputError(f"{model_path}: {variant.architecture} with {variant.encoder} does not export to {fmt} "
                         f"({first_line(e)})") from None
    if check["argmax_agreement"] < AGREEMENT:
        path.unlink()
        raise InputError(f"{model_path}: the {fmt} export predicts {check['argmax_agreement']:.4%} of pixels as "
                         f"PyTorch does (at least {AGREEMENT:.1%} needed)")
    write_label_map(output_dir / "labels.csv", labels)
    summary = {"format": fmt, "file": path.name, "source": str(model_path), "variant": variant.name,
               "seed": variant.seed, "epoch": epoch,
               "input": f"float32 RGB in 0-255, (batch, 3, height, width); height and width multiples of {divisor}",
               "scale": scale_description(variant, divisor),
               "output": "logits (batch, classes, height, width); the class of each channel in labels.csv",
               "check": check}
    write_json(output_dir / "export.json", summary)
    return summary
