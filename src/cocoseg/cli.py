"""`cocoseg` command line: the stages as subcommands; underscore flags (`--data_path`) are aliases."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Callable

from cocoseg.masks.label_map import AUTO, UNLABELED
from cocoseg.shared.errors import RESUBMIT_EXIT, InputError, StopRequested
from cocoseg.shared.files import output_problem

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations calls home at import


def _class_value(text: str) -> int | str:
    """Classes may be given by id or by name."""
    return int(text) if text.lstrip("-").isdigit() else text


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def _image_size(text: str) -> tuple[int, int]:
    sides = [int(v) for v in text.replace("x", ",").split(",")]
    if len(sides) not in (1, 2) or min(sides) < 1:
        raise argparse.ArgumentTypeError(f"expected H,W or one side, got {text!r}")
    return (sides[0], sides[-1])


def _numbers(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def _variant(args: argparse.Namespace):
    """The variant of `--settings` (all settings as JSON, as the workflow passes them), with any
    setting also given as a flag taken from the flag."""
    from cocoseg.training.variants import Variant

    overrides = {f.name: getattr(args, f.name) for f in fields(Variant) if f.name != "gpu"
                 and getattr(args, f.name) is not None}
    if str(overrides.get("encoder_weights")).lower() in ("none", "null"):  # random init
        overrides["encoder_weights"] = None
    if args.gpu:
        overrides["gpu"] = True
    return Variant.from_json(args.settings or "{}", **overrides)


def _train(args: argparse.Namespace) -> None:
    from cocoseg.masks.split_folder import read_labels
    from cocoseg.shared.hardware import default_cpus
    from cocoseg.shared.labels import has_background
    from cocoseg.training import train

    train_dir = args.train_dir or (args.data_path / "train" if args.data_path else None)
    val_dir = args.val_dir or (args.data_path / "val" if args.data_path else None)
    if train_dir is None:
        raise InputError("train: give --data_path, or --train-dir (and --val-dir, or a training split with a holdout)")
    variant = _variant(args)
    if args.num_classes is not None and args.num_classes != len(labels := read_labels(train_dir)):
        among = " with background" if has_background(labels) else " (no background class)"
        raise InputError(f"{train_dir}/labels.csv: {len(labels)} classes{among}, but --num_classes {args.num_classes}")
    output = args.output or Path("runs") / variant.name
    summary = train.train(variant, train_dir, val_dir, output, args.checkpoint_dir or output / "checkpoints",
                          args.log_dir or output / "logs", args.cpus or default_cpus(), args.allow_cpu_fallback,
                          args.ddp_timeout_minutes or train.DDP_TIMEOUT_MINUTES, args.keep_checkpoints, args.mem_mb,
                          args.checkpoint_minutes or train.CHECKPOINT_MINUTES, _read_from(args))
    if summary is not None:  # None in the extra processes of a multi-process run
        print(f"{variant.name}: {summary['epochs']} epochs, best mIoU {summary['best_val_miou']:.3f} on "
              f"{summary['selection']['split']} ({summary['selection']['subset']}) at epoch {summary['best_epoch']}, "
              f"{summary['train_seconds']:.0f} s; {output / 'model.pt'}", file=sys.stderr)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each flag's spellings once, its value once (`--batch-size, --batch_size BATCH_SIZE`), and
    defaults shown where a flag has one."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings or action.nargs == 0:
            return super()._format_action_invocation(action)
        names = ", ".join(dict.fromkeys(action.option_strings))
        return f"{names} {self._format_args(action, self._get_default_metavar_for_optional(action))}"

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) or action.default is argparse.SUPPRESS or action.nargs == 0:
            return action.help
        return super()._get_help_string(action)


def _command(sub, name: str, func, description: str, **defaults) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=description, description=description, formatter_class=HelpFormatter)
    p.set_defaults(func=func, **defaults)
    return p


def _add_mask_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--annotations", required=True, type=Path, nargs="+",
                   help="COCO JSON: one instances-format file, or several merged by id (the first file's "
                        "annotations are painted over the next one's: things before stuff), or one panoptic file")
    p.add_argument("--classes", nargs="+", type=_class_value, default=None,
                   help="category names or ids to keep, in label order (default: all, sorted by id)")
    p.add_argument("--unlabeled", choices=(AUTO, *UNLABELED), default=AUTO,
                   help="what pixels no annotation covers become: background (label 0, a class) or ignore (255, "
                        "where the data set labels every pixel); auto: background for one instances-format file, "
                        "ignore for several (things and stuff) or a panoptic file")
    p.add_argument("--ignore-categories", nargs="+", type=int, default=[], metavar="ID",
                   help="category ids whose annotations become ignore (255), e.g. COCO-Stuff's 183 'other'")
    p.add_argument("--max-images", "--max_images", type=_positive, default=None,
                   help="only the first N images by id (for quick runs)")


def _add_panoptic_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--panoptic-masks", type=Path, default=None,
                   help="folder of the panoptic PNGs: --annotations is then a COCO panoptic file")


def _label_rules(args: argparse.Namespace, panoptic: bool):
    from cocoseg.masks.label_map import LabelRules, resolve_unlabeled

    unlabeled = resolve_unlabeled(args.unlabeled, labels_every_pixel=panoptic or len(args.annotations) > 1)
    return LabelRules(args.classes, unlabeled, tuple(args.ignore_categories))


def _add_holdout_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--holdout-fraction", type=float, default=0.0,
                   help="share of the usable images held out of training to choose the best epoch")
    p.add_argument("--holdout-count", type=_positive, default=None,
                   help="hold out at most this many images (alone: exactly this many)")
    p.add_argument("--holdout-seed", type=int, default=0, help="seed of the held-out draw")


def _add_link_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--link", choices=["symlink", "hardlink", "copy"], default="symlink",
                   help="how OUT/images refers to the source images (symlink: no copy)")


def _add_run_choice(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variant", default="best", help="with --best: the report's winner (best) or a variant's name")
    p.add_argument("--seed", default="best", help="with --best: the variant's seed with the highest selection mIoU "
                   "(best) or a seed")


def _add_inference_options(p: argparse.ArgumentParser, tta_help: str, defaults: bool) -> None:
    p.add_argument("--mode", choices=["whole", "slide"], default="whole" if defaults else None,
                   help="whole: each image at the scale the variant trained at, once; slide: windows of the "
                        "variant's size over it at that scale, logits averaged where they overlap")
    p.add_argument("--stride", type=_image_size, help="slide's step, H,W or one side (default: 2/3 of the window)")
    p.add_argument("--tta", nargs="*", choices=["flip"], default=[] if defaults else None, help=tta_help)


def _add_read_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--packed", action="store_true",
                   help="read samples from each split's packed/ parts (`cocoseg pack`), not its images/ and masks/")
    p.add_argument("--stage", choices=["none", "local"], default="none",
                   help="local: copy the packed parts to --stage-dir when the job starts, check them, read only "
                        "from there, and remove them when it ends")
    p.add_argument("--stage-dir", type=Path,
                   help="the node's local disk for --stage local (default: $TMPDIR, else the system's temp folder)")


def _read_from(args: argparse.Namespace):
    import tempfile

    from cocoseg.training.split_sources import ReadFrom

    if args.stage == "local" and not args.packed:
        raise InputError("--stage local copies packed parts: give --packed too")
    stage_dir = args.stage_dir or Path(os.environ.get("TMPDIR") or tempfile.gettempdir())
    return ReadFrom(packed=args.packed, stage_dir=stage_dir if args.stage == "local" else None)


def _add_gpu_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gpu", action="store_true",
                   help="the job was given a GPU: stop with one line if CUDA cannot use it")
    p.add_argument("--allow-cpu-fallback", action="store_true",
                   help="with --gpu, run on the CPU (with a warning) where CUDA cannot be used")


def add_masks_command(sub) -> None:
    p = _command(sub, "masks", _masks, "COCO JSON + images -> OUT/{images,masks}, manifest.csv, labels.csv")
    _add_mask_options(p)
    p.add_argument("--images", required=True, type=Path, help="folder the file_names are relative to")
    _add_panoptic_option(p)
    p.add_argument("--output", required=True, type=Path, help="output folder")
    p.add_argument("--workers", type=_positive, default=1, help="processes")
    _add_link_option(p)
    _add_holdout_options(p)


def add_demo_command(sub) -> None:
    p = _command(sub, "demo", _demo, "write the synthetic demo dataset (COCO JSON and JPEGs)")
    p.add_argument("--output", required=True, type=Path, help="folder for annotations/ and images/")
    p.add_argument("--split", nargs=2, action="append", metavar=("NAME", "IMAGES"), required=True,
                   help="a split and its image count; repeat for each split")
    p.add_argument("--seed", type=int, default=0, help="seed of the drawn shapes")
    p.add_argument("--stuff", action="store_true",
                   help="draw the shapes over stuff regions (sky, ground, wall), annotated in <split>_stuff.json")


def add_index_command(sub) -> None:
    p = _command(sub, "index", _index, "workflow step: parse a split's COCO files once, write per-shard parts")
    _add_mask_options(p)
    p.add_argument("--panoptic", action="store_true", help="--annotations is a COCO panoptic file")
    p.add_argument("--output", required=True, type=Path, help="index folder")
    p.add_argument("--shards", type=_positive, default=1, help="parts to write, one per shard job")


def add_shard_command(sub) -> None:
    p = _command(sub, "shard", _shard, "workflow step: convert one shard")
    p.add_argument("--index-file", required=True, type=Path, help="the shard's part, written by `cocoseg index`")
    p.add_argument("--images", required=True, type=Path, help="folder the file_names are relative to")
    _add_panoptic_option(p)
    p.add_argument("--output", required=True, type=Path, help="shard output folder")
    _add_link_option(p)
    p.add_argument("--compress-level", type=int, default=1, choices=range(10), help="zlib level of the mask PNGs")
    p.add_argument("--name", default="", help="label for progress lines")


def add_train_command(sub) -> None:
    p = _command(sub, "train", _train, "train one variant on mask-stage folders (underscore spellings of the "
                 "flags are accepted too)")
    _add_train_folders(p)
    _add_variant_settings(p)
    _add_train_job_options(p)


def _add_train_folders(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-path", "--data_path", type=Path,
                   help="folder with train/ and val/ from `cocoseg masks` (or give --train-dir, --val-dir)")
    p.add_argument("--train-dir", type=Path, help="the training split, a `cocoseg masks` output folder")
    p.add_argument("--val-dir", type=Path, help="split that chooses the best epoch (default: the training "
                   "split's holdout, see `masks --holdout-fraction`)")
    p.add_argument("--output", type=Path, help="where model.pt and summary.json go (default runs/<variant>)")
    p.add_argument("--checkpoint-dir", type=Path, help="resumable checkpoints (default OUTPUT/checkpoints)")
    p.add_argument("--log-dir", type=Path, help="CSV and TensorBoard logs (default OUTPUT/logs)")
    p.add_argument("--num-classes", "--num_classes", type=_positive,
                   help="classes of labels.csv, background included where it is one; checked against it")


def _add_variant_settings(p: argparse.ArgumentParser) -> None:
    """`--settings` and one flag per setting of `Variant`, named, explained and limited by the
    setting itself (`variants.setting`); `gpu` is the job's own `--gpu`."""
    from typing import get_type_hints

    from cocoseg.training.variants import Variant

    p.add_argument("--settings", help="every setting of the variant as one JSON object (as the workflow passes "
                   "them); the flags below override single settings")
    kinds = get_type_hints(Variant)
    for f in fields(Variant):
        if f.name == "gpu":
            continue
        spellings = [f"--{f.name.replace('_', '-')}", f"--{f.name}", *SPELLINGS.get(f.name, ())]
        default = f.default
        shown = (",".join(map(str, default)) if isinstance(default, tuple)
                 else str(default).lower() if isinstance(default, bool) else str(default))
        p.add_argument(*dict.fromkeys(spellings), dest=f.name, type=_setting_parser(f.name, kinds[f.name]),
                       choices=f.metadata["choices"],
                       help=f.metadata["help"] + (f" (default {shown})" if default not in (None, "") else ""))


SPELLINGS = {"image_size": ("--img-size", "--img_size")}  # other names a setting's flag is known by


def _setting_parser(name: str, kind) -> Callable[[str], object]:
    """How a flag's text becomes the setting's value, from the setting's type."""
    if name == "image_size":
        return _image_size
    if kind is bool:
        return _true_or_false
    if "tuple" in str(kind):
        return _numbers
    for plain in (int, float):
        if kind in (plain, plain | None):
            return plain
    return str


def _true_or_false(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return text.lower() == "true"


def _add_train_job_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cpus", "--workers", type=_positive, default=None,
                   help="CPUs the job holds (default: all this process may use), shared over its processes, "
                        "loader workers and threads")
    p.add_argument("--mem-mb", type=_positive, help="memory the job holds (MB), recorded in summary.json")
    p.add_argument("--checkpoint-minutes", type=_positive_float,
                   help="write last.ckpt inside an epoch at least this often (default 30); SIGUSR1 or SIGTERM "
                        "write it and stop the run (exit status 75), which a rerun resumes at that batch")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep last.ckpt and best.ckpt once model.pt is written (default: removed)")
    p.add_argument("--ddp-timeout-minutes", type=_positive_float,
                   help="with several processes, how long one waits for a peer before the run fails "
                        "(default 5), so a dead process never leaves the others holding their devices")
    _add_read_options(p)
    _add_gpu_options(p)


def add_weights_command(sub) -> None:
    p = _command(sub, "weights", _weights, "fetch named encoder weights (or check a file) into a file that "
                 "loads offline", output_files=("output",))
    p.add_argument("--encoder", required=True, help="a segmentation_models_pytorch encoder")
    p.add_argument("--weights", required=True, help="a name SMP knows (imagenet, ...) or a state-dict file")
    p.add_argument("--output", required=True, type=Path, help="the state-dict file to write")


def add_evaluate_command(sub) -> None:
    p = _command(sub, "evaluate", _evaluate, "metrics of a trained model on a mask-stage folder, at each image's "
                 "own size")
    p.add_argument("--model", required=True, type=Path, help="model.pt written by `cocoseg train`")
    p.add_argument("--split-dir", required=True, type=Path, help="a `cocoseg masks` output folder")
    p.add_argument("--output", required=True, type=Path, help="folder for metrics.json, tables and panels")
    p.add_argument("--samples", type=int, default=6, help="sample panels to write")
    p.add_argument("--subset", choices=["all", "holdout"], default="all",
                   help="the split's images to score (holdout: those held out of training)")
    _add_inference_options(p, "also score with these test-time augmentations (flip: logits averaged with the "
                              "mirror's)", defaults=True)
    p.add_argument("--cpus", "--workers", type=_positive, default=1,
                   help="CPUs the job holds, shared between decoding workers and threads")
    _add_read_options(p)
    _add_gpu_options(p)


def add_predict_command(sub) -> None:
    p = _command(sub, "predict", _predict, "masks and overlays for every image of a folder (recursively), with "
                 "the model's labels.csv and a manifest of every file (ok, or skipped and why)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", "--model", dest="model", type=Path,
                       help="model.pt written by `cocoseg train` (results/models/<variant>/seed-<n>/model.pt)")
    which.add_argument("--best", type=Path, help="best.json of a report: predict with the model it names")
    _add_run_choice(p)
    p.add_argument("--images", required=True, type=Path, help="folder of images (jpg, png, bmp, tif, webp)")
    p.add_argument("--output", required=True, type=Path,
                   help="folder for masks/ (label values, as PNG), overlays/, labels.csv, manifest.csv and "
                        "prediction.json, outside the image folder")
    p.add_argument("--shard", type=int, default=0, help="predict only this share of the files (0-based) ...")
    p.add_argument("--shards", type=_positive, default=1, help="... of this many; `gather-predictions` joins them")
    p.add_argument("--no-overlays", dest="overlays", action="store_false", help="write masks only")
    _add_inference_options(p, "test-time augmentations (flip: logits averaged with the mirror's); with --best, "
                              "unset inference flags follow how the report scored (best.json's inference)",
                           defaults=False)
    p.add_argument("--cpus", "--workers", type=_positive, default=1,
                   help="CPUs the job holds, shared between decoding workers and threads")
    _add_gpu_options(p)


def add_gather_predictions_command(sub) -> None:
    p = _command(sub, "gather-predictions", _gather_predictions, "workflow step: one prediction folder from the "
                 "folders of its shards (`predict --shard`)")
    p.add_argument("--shard-dirs", required=True, nargs="+", type=Path, help="the shards' output folders, in order")
    p.add_argument("--output", required=True, type=Path, help="the prediction folder to write")


def add_report_command(sub) -> None:
    p = _command(sub, "report", _report, "comparison tables, plots and REPORT.md from a results folder",
                 output_files=("report_md",))
    p.add_argument("--results", type=Path, default=Path("results"), help="the workflow's results folder")
    p.add_argument("--variants", nargs="+", required=True, help="variant names to compare")
    p.add_argument("--seeds", nargs="+", required=True, help="seeds each variant ran with")
    p.add_argument("--eval-splits", nargs="+", required=True, help="splits the variants were scored on")
    p.add_argument("--data-splits", nargs="+", required=True, help="splits whose statistics to show")
    p.add_argument("--output-dir", type=Path, default=Path("results/report"), help="tables and plots")
    p.add_argument("--report-md", type=Path, default=Path("REPORT.md"), help="the report to write")
    p.add_argument("--template", type=Path, default=Path("workflow/report/REPORT.md.jinja"),
                   help="Jinja template of the report")
    p.add_argument("--configs", nargs="+", default=["config/config.yaml"],
                   help="the config files of the run, named in the report")
    p.add_argument("--bootstrap-resamples", type=int,
                   help="resamples of the paired bootstrap over images and seeds (unset: the report's default)")
    p.add_argument("--bootstrap-seed", type=int, help="random seed of the bootstrap (unset: the report's default)")


def add_export_command(sub) -> None:
    p = _command(sub, "export", _export, "a trained model as ONNX or TorchScript, checked against PyTorch",
                 output_files=("output",))
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", type=Path, help="model.pt written by `cocoseg train`")
    which.add_argument("--best", type=Path, help="best.json of a report: export the model it names")
    _add_run_choice(p)
    p.add_argument("--format", required=True, choices=["onnx", "torchscript"], help="what to export to")
    p.add_argument("--output", required=True, type=Path, help="folder for the model, labels.csv and export.json")
    p.add_argument("--check-split", type=Path, help="a `cocoseg masks` folder whose first images join the check")
    p.add_argument("--check-images", type=_positive, default=4, help="how many of its images")


def add_top_two_command(sub) -> None:
    p = _command(sub, "top-two", _top_two, "the images where the report's best two variants disagree most, with "
                 "both predictions", output_files=("output",))
    p.add_argument("--results", type=Path, default=Path("results"), help="the workflow's results folder")
    p.add_argument("--metrics", type=Path, default=Path("results/report/metrics.csv"),
                   help="the report's ranked metrics.csv")
    p.add_argument("--masks", type=Path, default=Path("results/masks"), help="the folder of the mask stage's splits")
    p.add_argument("--seeds", nargs="+", required=True, help="seeds each variant ran with; the first predicts")
    p.add_argument("--output", required=True, type=Path, help="the PNG to write")
    p.add_argument("--cpus", type=_positive, default=1, help="CPUs the job holds")


def add_gather_command(sub) -> None:
    p = _command(sub, "gather", _gather, "workflow step: assemble a split from its shards")
    p.add_argument("--meta", required=True, type=Path, help="meta.json written by `cocoseg index`")
    p.add_argument("--shard-dirs", required=True, nargs="+", type=Path, help="the shard output folders")
    p.add_argument("--output", required=True, type=Path, help="the split folder to write")
    p.add_argument("--name", default="", help="label for progress lines")
    _add_holdout_options(p)


def add_pack_command(sub) -> None:
    p = _command(sub, "pack", _pack, "a split folder's usable images and masks also as a few large tar files "
                 "(SPLIT_DIR/packed/), for shared file systems")
    p.add_argument("--split-dir", required=True, type=Path, help="a `cocoseg masks` output folder")
    p.add_argument("--part-mb", type=_positive_float, default=1000, help="start a new part past this size (MB)")


def _pack(args: argparse.Namespace) -> None:
    from cocoseg.masks.packed import pack_split

    index = pack_split(args.split_dir, args.part_mb)
    size = sum(part["bytes"] for part in index["parts"]) / 1e6
    print(f"{args.split_dir}: {len(index['samples'])} samples in {len(index['parts'])} part(s), {size:.0f} MB",
          file=sys.stderr)


COMMANDS = (  # in the order `cocoseg --help` lists them
    add_masks_command,
    add_demo_command,
    add_index_command,
    add_shard_command,
    add_pack_command,
    add_train_command,
    add_weights_command,
    add_evaluate_command,
    add_predict_command,
    add_gather_predictions_command,
    add_report_command,
    add_export_command,
    add_top_two_command,
    add_gather_command,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cocoseg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for add_command in COMMANDS:
        add_command(sub)
    return parser


def _holdout(args: argparse.Namespace) -> dict:
    if not 0 <= args.holdout_fraction < 1:
        raise InputError(f"--holdout-fraction {args.holdout_fraction}: must be at least 0 and below 1")
    return {"holdout_fraction": args.holdout_fraction, "holdout_count": args.holdout_count,
            "holdout_seed": args.holdout_seed}


def _masks(args: argparse.Namespace) -> None:
    from cocoseg.masks.convert import convert

    if not args.images.is_dir():
        raise InputError(f"{args.images}: image folder not found")
    _check_panoptic(args.annotations, args.panoptic_masks is not None)
    convert(args.annotations, args.images, args.output, workers=args.workers, rules=_label_rules(args, args.panoptic_masks is not None),
            max_images=args.max_images, link_mode=args.link, panoptic_dir=args.panoptic_masks, **_holdout(args))


def _check_panoptic(annotations: list[Path], panoptic: bool) -> None:
    if panoptic and len(annotations) != 1:
        raise InputError(f"--annotations: a panoptic split has one file, not {len(annotations)}")


def _demo(args: argparse.Namespace) -> None:
    from cocoseg.masks.demo import make_demo

    make_demo(args.output, {name: int(count) for name, count in args.split}, seed=args.seed, stuff=args.stuff)


def _index(args: argparse.Namespace) -> None:
    from cocoseg.masks.convert import index_split

    _check_panoptic(args.annotations, args.panoptic)
    index_split(args.annotations, args.output, args.shards, _label_rules(args, args.panoptic), max_images=args.max_images,
                panoptic=args.panoptic)


def _shard(args: argparse.Namespace) -> None:
    from cocoseg.masks.convert import convert_shard

    convert_shard(args.index_file, args.images, args.output, link_mode=args.link,
                  compress_level=args.compress_level, name=args.name, panoptic_dir=args.panoptic_masks)


def _gather(args: argparse.Namespace) -> None:
    from cocoseg.masks.convert import gather_split

    gather_split(args.meta, args.shard_dirs, args.output, name=args.name, **_holdout(args))


def _weights(args: argparse.Namespace) -> None:
    from cocoseg.training.network import save_encoder_weights

    save_encoder_weights(args.encoder, args.weights, args.output)
    print(f"{args.encoder} encoder weights ({args.weights}) -> {args.output}", file=sys.stderr)


def _evaluate(args: argparse.Namespace) -> None:
    from cocoseg.evaluation.evaluate import evaluate

    m = evaluate(args.model, args.split_dir, args.output, samples=args.samples, cpus=args.cpus,
                 gpu_requested=args.gpu, allow_cpu_fallback=args.allow_cpu_fallback, tta=tuple(args.tta),
                 mode=args.mode, stride=args.stride, subset=args.subset, read_from=_read_from(args))
    print(f"{m['variant']} on {m['split']}: mIoU {m['miou']:.3f}, mDice {m['mdice']:.3f}, "
          f"pixel accuracy {m['pixel_accuracy']:.3f}, {m['inference_images_per_s']:.1f} images/s", file=sys.stderr)


def _model_path(args: argparse.Namespace) -> Path:
    """--model as given, or the run a report's best.json names (--best, with --variant and --seed)."""
    from cocoseg.report.best_file import chosen_model, read_best

    if args.best:
        return chosen_model(read_best(args.best), args.variant, args.seed)
    if (args.variant, args.seed) != ("best", "best"):
        raise InputError("--variant and --seed choose a run of a report's --best; --model is one already")
    return args.model


def _inference(args: argparse.Namespace) -> dict:
    """How `predict` infers: the flags given, else (with --best) how the report scored, else whole images."""
    from cocoseg.evaluation.predictor import WHOLE
    from cocoseg.report.best_file import read_best

    scored = read_best(args.best).get("inference") if args.best else None
    given = {"mode": args.mode, "stride": list(args.stride) if args.stride else None, "tta": args.tta}
    return {**WHOLE, **(scored or {}), **{key: value for key, value in given.items() if value is not None}}


def _predict(args: argparse.Namespace) -> None:
    from cocoseg.deploy.predict import predict

    done = predict(_model_path(args), args.images, args.output, cpus=args.cpus, shard=args.shard,
                   shards=args.shards, overlays=args.overlays, gpu_requested=args.gpu,
                   allow_cpu_fallback=args.allow_cpu_fallback, inference=_inference(args))
    print(f"{done['ok']} image{'s' * (done['ok'] != 1)} written, {done['skipped']} skipped -> {args.output}"
          + (f" (reasons in {args.output / 'manifest.csv'})" if done["skipped"] else ""), file=sys.stderr)


def _gather_predictions(args: argparse.Namespace) -> None:
    from cocoseg.deploy.predict import gather_predictions

    gather_predictions(args.shard_dirs, args.output)


def _report(args: argparse.Namespace) -> None:
    from cocoseg.report.document import build

    bootstrap = {"resamples": args.bootstrap_resamples, "bootstrap_seed": args.bootstrap_seed}
    build(args.results, args.variants, args.seeds, args.eval_splits, args.data_splits, args.output_dir,
          args.report_md, args.template, args.configs, **{k: v for k, v in bootstrap.items() if v is not None})


def _export(args: argparse.Namespace) -> None:
    from cocoseg.deploy.export import export

    done = export(_model_path(args), args.format, args.output, args.check_split, args.check_images)
    check = done["check"]
    print(f"{args.output / done['file']}: {done['variant']} seed {done['seed']}; predicts "
          f"{check['argmax_agreement']:.4%} of pixels as PyTorch does, logits within "
          f"{check['max_logit_difference']:.2g}", file=sys.stderr)


def _top_two(args: argparse.Namespace) -> None:
    from cocoseg.report.top_two import draw_top_two

    shown = draw_top_two(args.results, args.metrics, args.masks, args.seeds, args.output, cpus=args.cpus)
    print(f"{args.output}: the images where the best two variants disagree most: {', '.join(shown) or 'none'}",
          file=sys.stderr)


def one_line(error: InputError) -> str:
    """The message itself, also when a data-loader worker raised it (torch then adds its traceback)."""
    last = str(error).strip().splitlines()[-1]
    prefix = f"{InputError.__module__}.{InputError.__qualname__}: "
    return last.removeprefix(prefix) if "Original Traceback" in str(error) else str(error)


OUTPUT_FOLDERS = ("output", "output_dir", "checkpoint_dir", "log_dir")  # arguments naming folders a command writes


def check_outputs(args: argparse.Namespace) -> None:
    """Every path a command writes, checked before any work (a folder under a regular file)."""
    files = getattr(args, "output_files", ())
    for name in (*OUTPUT_FOLDERS, *files):
        if (path := getattr(args, name, None)) is not None and (problem := output_problem(path, name in files)):
            raise InputError(problem)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_outputs(args)
        args.func(args)
    except InputError as e:
        print(f"cocoseg: error: {one_line(e)}", file=sys.stderr)
        return 2
    except StopRequested as e:
        print(f"cocoseg: stopped: {e}", file=sys.stderr)
        return RESUBMIT_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main())
