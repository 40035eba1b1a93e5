"""Mask-stage throughput and peak memory against a per-annotation baseline, same data, same run.

    python benchmarks/bench_masks.py [--coco DIR] [--repeat 3] [--copies 3] [--against COMMIT ...]

`--against` adds the stage as it was at an earlier commit of this repository (its src/,
extracted with `git archive`), run on the same data in the same invocation, so a regression
shows as a ratio.

Data: real COCO photos (`--coco`: the repository's 14 in tests/data/coco-real by default, or a
folder in COCO 2017's layout, such as 80 + 80 train2017 and val2017 photos), each image listed
`--copies` times under new names so runs last long enough to time. Each measurement runs in a
fresh process, so its peak RSS (the process and its workers) is its own. Prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from commits import REPO, source_at
from photos import COCO_REAL, repeated_coco


def seed_style(annotations: Path, images: Path, out: Path) -> int:
    """What the single-script version did: annToMask per annotation, PIL save, image copy."""
    import numpy as np
    from PIL import Image
    from pycocotools.coco import COCO

    coco = COCO(str(annotations))
    labels = {cid: i + 1 for i, cid in enumerate(sorted(coco.getCatIds()))}
    (out / "masks").mkdir(parents=True)
    (out / "images").mkdir(parents=True)
    for image_id in coco.getImgIds():
        info = coco.loadImgs(image_id)[0]
        mask = np.zeros((info["height"], info["width"]), np.uint8)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=None)):
            mask[coco.annToMask(ann) > 0] = labels[ann["category_id"]]
        Image.fromarray(mask).save(out / "masks" / Path(info["file_name"]).with_suffix(".png"))
        shutil.copy(images / info["file_name"], out / "images" / info["file_name"])
    return len(coco.getImgIds())


def cocoseg_stage(annotations: Path, images: Path, out: Path, workers: int) -> int:
    try:
        from cocoseg.masks.convert import convert
    except ModuleNotFoundError:  # an earlier commit's source, from before the stage packages
        from cocoseg.convert import convert

    return convert(annotations, images, out, workers=workers)["images"]


def run_one(method: str, annotations: Path, images: Path, scratch: Path) -> dict:
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        start = time.perf_counter()
        if method == "per-annotation":
            n = seed_style(annotations, images, Path(tmp) / "out")
        else:
            n = cocoseg_stage(annotations, images, Path(tmp) / "out", workers=int(method.split("=")[1]))
        seconds = time.perf_counter() - start
    peak_kib = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                   resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return {"images": n, "seconds": seconds, "peak_mib": peak_kib / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--coco", type=Path, default=COCO_REAL, help="real COCO photos (see above)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per method; the fastest is reported")
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--scratch", type=Path, default=REPO / "results" / "bench",
                        help="where outputs are written (default results/bench: the file system "
                             "the workflow writes to; file creation cost differs between folders)")
    parser.add_argument("--against", nargs="+", default=[], metavar="COMMIT",
                        help="also run the stage (workers=1) as it was at these commits")
    parser.add_argument("--run-one", nargs=3, metavar=("METHOD", "ANNOTATIONS", "IMAGES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one:
        method, annotations, images = args.run_one
        print(json.dumps(run_one(method, Path(annotations), Path(images), args.scratch)))
        return
    args.scratch.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(dir=args.scratch) as tmp:
        annotations, images, label = repeated_coco(Path(tmp), args.coco.resolve(), args.copies)
        # method name -> (what run_one runs, the src/ it imports: None for this checkout)
        methods = {"per-annotation": ("per-annotation", None), "cocoseg workers=1": ("cocoseg workers=1", None),
                   "cocoseg workers=2": ("cocoseg workers=2", None)}
        for commit in args.against:
            methods[f"{commit[:10]} workers=1"] = ("cocoseg workers=1", source_at(commit, Path(tmp)))
        results = {}
        for name, (method, source) in methods.items():
            env = {**os.environ, "PYTHONPATH": str(source or REPO / "src")}
            runs = []
            for _ in range(args.repeat):
                line = subprocess.run([sys.executable, __file__, "--scratch", str(args.scratch),
                                       "--run-one", method, str(annotations), str(images)], env=env,
                                      check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
                runs.append(json.loads(line))
            results[name] = min(runs, key=lambda r: r["seconds"])
    base = results["per-annotation"]
    base_rate = base["images"] / base["seconds"]
    print(f"data: {label}, {base['images']} images; {os.cpu_count()} CPUs; best of {args.repeat} runs each; "
          f"outputs in {args.scratch}")
    own_rate = results["cocoseg workers=1"]["images"] / results["cocoseg workers=1"]["seconds"]
    print(f"{'method':<20} {'images/s':>9} {'ms/image':>9} {'peak MiB':>9} {'vs per-annotation':>17} "
          f"{'vs workers=1':>12}")
    for method, r in results.items():
        rate = r["images"] / r["seconds"]
        print(f"{method:<20} {rate:9.0f} {1000 / rate:9.2f} {r['peak_mib']:9.0f} {rate / base_rate:16.2f}x "
              f"{rate / own_rate:11.2f}x")


if __name__ == "__main__":
    main()
