import re

import pytest

from cocoseg.shared.errors import InputError
from cocoseg.training.module import lr_factor
from cocoseg.training.variants import Variant, expand

MODEL = {"architecture": "DeepLabV3Plus", "encoders": ["resnet18", "mobilenet_v2"],
         "image_sizes": [128, [256, 512]], "encoder_weights": None, "overrides": {}}


def test_grid_gives_readable_names_and_shared_train_keys():
    variants = expand(MODEL, {"epochs": 3, "lr": 0.01, "train_split": "train"})
    assert list(variants) == ["deeplabv3plus-resnet18-128", "deeplabv3plus-resnet18-256x512",
                              "deeplabv3plus-mobilenet_v2-128", "deeplabv3plus-mobilenet_v2-256x512"]
    assert all(v.epochs == 3 and v.lr == 0.01 for v in variants.values())
    assert variants["deeplabv3plus-resnet18-256x512"].image_size == (256, 512)


def test_overrides_apply_by_name_and_unknown_names_are_refused():
    model = {**MODEL, "overrides": {"deeplabv3plus-resnet18-128": {"epochs": 30, "gpu": True}}}
    variants = expand(model, {"epochs": 3})
    assert variants["deeplabv3plus-resnet18-128"].epochs == 30 and variants["deeplabv3plus-resnet18-128"].gpu
    assert variants["deeplabv3plus-mobilenet_v2-128"].epochs == 3
    with pytest.raises(InputError, match="'deeplabv3plus-resnet99-128', which is not a variant"):
        expand({**MODEL, "overrides": {"deeplabv3plus-resnet99-128": {}}}, {})


def test_an_unknown_override_key_is_named_and_the_seed_is_set_per_run():
    with pytest.raises(InputError, match=r"overrides.deeplabv3plus-resnet18-128: unknown key\(s\) lrr, seed"):
        expand({**MODEL, "overrides": {"deeplabv3plus-resnet18-128": {"lrr": 1, "seed": 3}}}, {})
    variant = expand(MODEL, {"seeds": [0, 1]})["deeplabv3plus-resnet18-128"]
    assert variant.with_seed("1").seed == 1 and variant.with_seed(1).name == variant.name


@pytest.mark.parametrize("size", [0, (128, -32), (1, 2, 3)])
def test_sizes_must_be_positive_pairs(size):
    with pytest.raises(InputError, match="give one side or \\[height, width\\]"):
        Variant(image_size=size)


@pytest.mark.parametrize("architecture, divisor", [("Unet", 1), ("FPN", 32), ("DeepLabV3Plus", 16), ("PSPNet", 8),
                                                   ("Linknet", 32)])
def test_each_architecture_gets_its_own_divisor_as_smp_checks_it(architecture, divisor):
    import segmentation_models_pytorch as smp
    import torch

    from cocoseg.training.network import input_divisor, size_problem

    assert input_divisor(architecture, "resnet18") == divisor
    model = smp.create_model(architecture, encoder_name="resnet18", encoder_weights=None, classes=3).eval()
    height, width = 64, 96 + 8  # 104: a multiple of 8, not of 16 or 32
    accepted = size_problem(architecture, "resnet18", (height, width)) is None
    try:
        model.check_input_shape(torch.zeros(1, 3, height, width))  # what SMP's forward runs first
        smp_accepts = True
    except RuntimeError:
        smp_accepts = False
    assert accepted == smp_accepts
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 96)).shape[-2:] == (64, 96)


def test_schedule_warms_up_then_decays_to_zero():
    assert lr_factor(0, 100, 10, "poly") == pytest.approx(0.1)
    assert lr_factor(10, 100, 10, "poly") == pytest.approx(1.0)
    assert lr_factor(100, 100, 10, "poly") == pytest.approx(0.0)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5)
    mid = [lr_factor(s, 100, 10, "poly") for s in range(10, 101)]
    assert all(a >= b for a, b in zip(mid, mid[1:]))


GRID_MODEL = {**MODEL, "architectures": ["Unet", "FPN"], "encoders": ["resnet18"], "image_sizes": [128],
              "grid": {"lr": [1.0e-3, 3.0e-4], "schedule": ["poly", "cosine"]}}


def test_architectures_and_grid_axes_cross_and_only_settings_off_the_train_values_name_a_variant():
    variants = expand(GRID_MODEL, {"lr": 1.0e-3, "schedule": "poly", "epochs": 3})
    assert list(variants) == [
        "unet-resnet18-128", "unet-resnet18-128-cosine", "unet-resnet18-128-lr3e-4",
        "unet-resnet18-128-lr3e-4-cosine", "fpn-resnet18-128", "fpn-resnet18-128-cosine",
        "fpn-resnet18-128-lr3e-4", "fpn-resnet18-128-lr3e-4-cosine"]
    crossed = variants["fpn-resnet18-128-lr3e-4-cosine"]
    assert (crossed.architecture, crossed.lr, crossed.schedule, crossed.epochs) == ("FPN", 3.0e-4, "cosine", 3)


def test_a_value_added_to_an_axis_renames_and_changes_no_existing_variant():
    before = expand(GRID_MODEL, {"lr": 1.0e-3})
    wider = {**GRID_MODEL, "grid": {"lr": [1.0e-3, 3.0e-4, 1.0e-4], "schedule": ["poly", "cosine"]}}
    after = expand(wider, {"lr": 1.0e-3})
    assert set(before) < set(after) and "unet-resnet18-128-lr1e-4-cosine" in after
    assert all(after[name] == variant for name, variant in before.items())


def test_overrides_reach_crossed_variants_and_grid_mistakes_name_the_key():
    model = {**GRID_MODEL, "overrides": {"fpn-resnet18-128-lr3e-4": {"batch_size": 4}}}
    assert expand(model, {"lr": 1.0e-3})["fpn-resnet18-128-lr3e-4"].batch_size == 4
    with pytest.raises(InputError, match=r"config model.grid: unknown key\(s\) lrate"):
        expand({**GRID_MODEL, "grid": {"lrate": [0.1]}}, {})
    with pytest.raises(InputError, match=r"config model.grid.batch_size: 'big' is not of the kind batch_size takes \(int\)"):
        expand({**GRID_MODEL, "grid": {"batch_size": [8, "big"]}}, {})
    with pytest.raises(InputError, match="two variants would both be named 'unet-resnet18-128-bs8'"):
        expand({**GRID_MODEL, "architectures": ["Unet"], "grid": {"batch_size": [8, 8]}}, {})


def test_names_are_valid_file_names_and_wildcards():
    from cocoseg.training.variants import setting_label, variant_name
    assert setting_label("channels_last", False) == "no-channels-last"
    assert setting_label("weight_decay", 0.05) == "wd0.05" and setting_label("lr", 2.5e-4) == "lr2.5e-4"
    assert variant_name("UnetPlusPlus", "tu-convnext_tiny", (512, 1024), {"schedule": "Cosine/Warm"}) == \
        "unetplusplus-tu-convnext_tiny-512x1024-cosine-warm"


def test_each_loss_ignores_255_and_equals_its_value_on_the_labelled_pixels_alone():
    """Logits at ignored pixels change nothing; cross-entropy equals the hand-computed mean of
    -log softmax over the labelled pixels; each term equals SMP's own loss on those pixels only."""
    import segmentation_models_pytorch as smp
    import torch

    from cocoseg.training.losses import SegmentationLoss

    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 5)
    masks = torch.randint(0, 3, (2, 4, 5))
    masks[0, 0, :3] = 255
    masks[1, 2, 1] = 255
    keep = masks != 255
    noisy = logits.clone()
    noisy.permute(0, 2, 3, 1)[~keep] = 100.0  # whatever the network says where nothing is labelled
    log_p = torch.log_softmax(logits, dim=1).permute(0, 2, 3, 1)[keep]
    by_hand = -log_p[torch.arange(len(log_p)), masks[keep]].mean()
    assert SegmentationLoss("ce")(logits, masks) == pytest.approx(float(by_hand), rel=1e-6)
    # labelled pixels only, as one image of shape 1 x C x 1 x N, no ignore needed
    flat_logits = logits.permute(1, 0, 2, 3)[:, keep].reshape(1, 3, 1, -1)
    flat_masks = masks[keep].reshape(1, 1, -1)
    reference = {"dice": smp.losses.DiceLoss("multiclass"), "focal": smp.losses.FocalLoss("multiclass"),
                 "jaccard": smp.losses.JaccardLoss("multiclass"), "lovasz": smp.losses.LovaszLoss("multiclass")}
    for name, loss in reference.items():
        ours = SegmentationLoss(name)
        assert ours(noisy, masks) == pytest.approx(float(ours(logits, masks)), rel=1e-5), name
        assert ours(logits, masks) == pytest.approx(float(loss(flat_logits, flat_masks)), rel=1e-5), name
    dice = float(reference["dice"](flat_logits, flat_masks))
    summed = SegmentationLoss("ce+dice")(logits, masks)
    assert summed == pytest.approx(float(by_hand) + dice, rel=1e-5)  # each term weighs 1
    weighted = SegmentationLoss("ce+dice", loss_weights=(2.0, 0.5))(logits, masks)
    assert weighted == pytest.approx(2 * float(by_hand) + 0.5 * dice, rel=1e-5)


def test_ce_plus_dice_trains_other_weights_than_ce_from_the_same_seed():
    """One optimiser step of each from the same start and batch: a loss that only renames `ce` would
    leave the same weights."""
    import torch

    from cocoseg.training.module import SegmentationModule

    torch.manual_seed(0)
    images, masks = torch.randn(2, 3, 64, 64), torch.randint(0, 3, (2, 64, 64))
    weights = {}
    for loss in ("ce", "ce+dice"):
        torch.manual_seed(1)
        module = SegmentationModule(Variant(image_size=64, loss=loss), 3)
        optimiser = torch.optim.SGD(module.parameters(), lr=0.1)
        module.criterion(module(images), masks).backward()
        optimiser.step()
        weights[loss] = module.model.state_dict()
    assert max(float((weights["ce"][k].float() - weights["ce+dice"][k].float()).abs().max())
               for k in weights["ce"]) > 1e-4


def test_loss_weights_must_fit_the_terms_and_be_above_zero():
    with pytest.raises(InputError, match=r"loss_weights \[1.0, 0.0\]: every weight must be above 0"):
        Variant(loss="ce+dice", loss_weights=[1, 0])
    with pytest.raises(InputError, match="give one weight per term of 'ce\\+dice' \\(2\\)"):
        expand(MODEL, {"loss": "ce+dice", "loss_weights": [1.0]})
    assert Variant(loss="ce+dice", loss_weights=[1, 0.5]).loss_weights == (1.0, 0.5)


def test_an_unknown_loss_is_refused_with_its_key():
    with pytest.raises(InputError, match="config train.loss: 'fcal' is not one of ce, dice, focal"):
        expand(MODEL, {"loss": "fcal"})
    with pytest.raises(InputError, match="config model.grid.loss: 'ce\\+ce' is not one of"):
        expand({**MODEL, "grid": {"loss": ["ce", "ce+ce"]}}, {})
    assert list(expand({**MODEL, "encoders": ["resnet18"], "image_sizes": [128], "grid": {"loss": ["ce", "focal"]}},
                       {}))[1] == "deeplabv3plus-resnet18-128-focal"


def test_inverse_sqrt_frequency_weights_follow_the_pixel_counts():
    from cocoseg.training.losses import inverse_sqrt_frequency
    weights = inverse_sqrt_frequency([900, 100, 0, 25])
    shares = [900 / 1025, 100 / 1025, 25 / 1025]
    raw = [s ** -0.5 for s in shares]
    expected = [r / (sum(raw) / 3) for r in raw]
    assert weights[2] == 0 and weights[:2] + weights[3:] == pytest.approx(expected)
    assert weights[3] / weights[0] == pytest.approx(6.0)  # 36 times rarer: 6 times the weight


def test_class_weights_weigh_the_cross_entropy_term_as_torch_does():
    import torch
    from torch import nn

    from cocoseg.training.losses import SegmentationLoss
    torch.manual_seed(1)
    logits, masks = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    masks[0, 0] = 255
    weights = [0.5, 1.0, 2.0]
    reference = nn.CrossEntropyLoss(weight=torch.tensor(weights), ignore_index=255)(logits, masks)
    assert SegmentationLoss("ce", class_weights=weights)(logits, masks) == pytest.approx(float(reference))
    with pytest.raises(InputError, match="class_weights 'inverse' is not one of none, inverse_sqrt_frequency"):
        Variant(class_weights="inverse")


def test_the_scale_recipe_is_a_grid_axis_named_in_the_variant():
    variants = expand({**MODEL, "encoders": ["resnet18"], "image_sizes": [128], "grid": {"resize": ["short_side", "fit"],
                                                                   "scale_range": [[0.5, 2.0], [0.75, 2.0]]}},
                      {"scale_range": [0.5, 2.0]})
    assert list(variants) == ["deeplabv3plus-resnet18-128", "deeplabv3plus-resnet18-128-scalerange0.75-2",
                              "deeplabv3plus-resnet18-128-fit", "deeplabv3plus-resnet18-128-fit-scalerange0.75-2"]
    assert variants["deeplabv3plus-resnet18-128-fit-scalerange0.75-2"].scale_range == (0.75, 2.0)
    with pytest.raises(InputError, match=r"scale_range \[2.0, 1.0\]: \[low, high\] with 0 < low <= high"):
        expand({**MODEL, "grid": {"scale_range": [[2.0, 1.0]]}}, {})


# A value other than the default for each text setting without a list of choices.
OTHER_TEXT = {"architecture": "FPN", "encoder": "resnet34", "encoder_weights": "imagenet", "loss": "ce+dice",
              "precision": "32-true", "name": "probe"}


def other_value(f):
    """A valid value other than the setting's default, and how it is written on the command line."""
    default, choices = f.default, f.metadata["choices"]
    if choices:
        value = next(choice for choice in choices if choice != default)
    elif isinstance(default, bool):
        value = not default
    elif f.name == "freeze_encoder_epochs":
        value = 1
    elif isinstance(default, int) or f.name == "base_short_side":
        value = (default or 0) + 2
    elif isinstance(default, float):
        value = default / 2
    elif f.name == "loss_weights":
        return (1.0, 0.5), "1,0.5"  # with OTHER_TEXT's two-term loss
    elif isinstance(default, tuple):
        value = tuple(type(v)(v * 2) for v in default) if f.name == "image_size" else (0.75, 1.5)
    else:
        value = OTHER_TEXT[f.name]
    text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value).lower() if isinstance(value, bool) \
        else str(value)
    return value, text


def test_every_setting_has_a_flag_that_overrides_the_workflows_settings():
    """`cocoseg train --settings JSON --<setting> VALUE`: each flag sets its setting over the JSON,
    and the others keep the JSON's values."""
    from dataclasses import fields

    from cocoseg.cli import _variant, build_parser

    base = Variant(architecture="Unet", epochs=3, loss="ce+dice", image_size=(64, 96))
    for f in fields(Variant):
        if f.name == "gpu":  # the job's own --gpu: the scheduler gave it one
            continue
        value, text = other_value(f)
        args = build_parser().parse_args(["train", "--settings", base.to_json(), f"--{f.name.replace('_', '-')}",
                                          text])
        variant = _variant(args)
        assert getattr(variant, f.name) == value, f.name
        untouched = {k: v for k, v in base.to_dict().items() if k not in (f.name, "name", "freeze_encoder_epochs")}
        assert {k: variant.to_dict()[k] for k in untouched} == untouched, f.name
    args = build_parser().parse_args(["train", "--settings", base.to_json(), "--encoder-weights", "none", "--gpu"])
    assert _variant(args).encoder_weights is None and _variant(args).gpu


@pytest.mark.parametrize("settings, message", [
    ({"schedule": "step"}, "schedule 'step' is not one of poly, cosine"),
    ({"epochs": 0}, "epochs 0: at least 1"),
    ({"accelerator": "tpu"}, "accelerator 'tpu' is not one of auto, cpu, gpu"),
    ({"probe": 1}, "unknown setting(s) probe"),
])
def test_settings_a_variant_cannot_take_are_refused_in_one_line(settings, message):
    import json

    with pytest.raises(InputError, match=re.escape(message)):
        Variant.from_json(json.dumps(settings))
