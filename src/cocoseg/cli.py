"""`cocoseg` command line: the stages as subcommands, plus the seed scripts' flags."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .files import InputError

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations calls home at import


def _class_value(text: str) -> int | str:
    """Classes may be given by id or by name."""
    return int(text) if text.lstrip("-").isdigit() else text


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_mask_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--classes", nargs="+", type=_class_value, default=None,
                   help="category names or ids to keep, in label order (default: all, sorted by id)")
    p.add_argument("--max-images", "--max_images", type=_positive, default=None,
                   help="only the first N images by id (for quick runs)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cocoseg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("masks", help="COCO JSON + images -> OUT/{images,masks}, manifest.csv, labels.csv")
    p.add_argument("--annotations", required=True, type=Path, help="COCO instances JSON")
    p.add_argument("--images", required=True, type=Path, help="folder the file_names are relative to")
    p.add_argument("--output", required=True, type=Path, help="output folder")
    p.add_argument("--workers", type=_positive, default=1, help="processes (default 1)")
    p.add_argument("--link", choices=["symlink", "hardlink", "copy"], default="symlink",
                   help="how OUT/images refers to the source images (default symlink: no copy)")
    _add_mask_options(p)

    p = sub.add_parser("demo", help="write the synthetic demo dataset")
    p.add_argument("--output", required=True, type=Path)
    p.add_argument("--split", nargs=2, action="append", metavar=("NAME", "IMAGES"), required=True)
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("index", help="workflow step: parse a COCO file once, write per-shard parts")
    p.add_argument("--annotations", required=True, type=Path)
    p.add_argument("--output", required=True, type=Path, help="index folder")
    p.add_argument("--shards", type=_positive, default=1)
    _add_mask_options(p)

    p = sub.add_parser("shard", help="workflow step: convert one shard")
    p.add_argument("--index-file", required=True, type=Path)
    p.add_argument("--images", required=True, type=Path)
    p.add_argument("--output", required=True, type=Path)
    p.add_argument("--link", choices=["symlink", "hardlink", "copy"], default="symlink")
    p.add_argument("--compress-level", type=int, default=1, choices=range(10))
    p.add_argument("--name", default="")

    p = sub.add_parser("gather", help="workflow step: assemble a split from its shards")
    p.add_argument("--meta", required=True, type=Path)
    p.add_argument("--shard-dirs", required=True, nargs="+", type=Path)
    p.add_argument("--output", required=True, type=Path)
    p.add_argument("--name", default="")
    return parser


def run(args: argparse.Namespace) -> None:
    from . import convert, demo

    if args.command == "masks":
        if not args.images.is_dir():
            raise InputError(f"{args.images}: image folder not found")
        convert.convert(args.annotations, args.images, args.output, workers=args.workers,
                        classes=args.classes, max_images=args.max_images, link_mode=args.link)
    elif args.command == "demo":
        demo.make_demo(args.output, {name: int(count) for name, count in args.split}, seed=args.seed)
    elif args.command == "index":
        convert.index_split(args.annotations, args.output, args.shards, classes=args.classes,
                            max_images=args.max_images)
    elif args.command == "shard":
        convert.convert_shard(args.index_file, args.images, args.output, link_mode=args.link,
                              compress_level=args.compress_level, name=args.name)
    elif args.command == "gather":
        convert.gather_split(args.meta, args.shard_dirs, args.output, name=args.name)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except InputError as e:
        print(f"cocoseg: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
