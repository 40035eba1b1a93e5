"""The mask stage's first step (`cocoseg index`: parse the COCO file once, write the shards'
parts) on a generated file the size of COCO train2017's: seconds and peak memory, against the
step as it was at earlier commits in the same invocation.

    python benchmarks/bench_index.py [--images 118287] [--shards 16] [--against COMMIT ...]

The file (118,287 images and about 7.3 annotations each, polygons of 8 to 60 points and 1% crowd
RLE, as in COCO) is generated once under `--scratch` and reused. Each measurement runs in a fresh
process, whose own peak RSS is reported, and as a multiple of the file's size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from commits import source_at

REPO = Path(__file__).resolve().parents[1]
ANNOTATIONS_PER_IMAGE = 7.27  # COCO train2017: 860,001 annotations over 118,287 images


def _floats(values: np.ndarray) -> str:
    return ",".join(f"{v:.2f}" for v in values.tolist())


def write_coco_like(path: Path, images: int, seed: int = 0) -> None:
    """A COCO instance file of `images` images, written as it is generated (COCO's key order)."""
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".part")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write('{"info":{"description":"generated"},"licenses":[],"images":[')
        for i in range(1, images + 1):
            width, height = int(rng.integers(320, 641)), int(rng.integers(240, 481))
            f.write(("," if i > 1 else "") + json.dumps(
                {"license": 1, "file_name": f"{i:012d}.jpg", "coco_url": f"http://images.example/{i:012d}.jpg",
                 "height": height, "width": width, "date_captured": "2013-11-14 16:28:13",
                 "flickr_url": f"http://farm.example/{i:012d}.jpg", "id": i}, separators=(",", ":")))
        f.write('],"annotations":[')
        count = int(images * ANNOTATIONS_PER_IMAGE)
        image_of = rng.integers(1, images + 1, size=count)
        for k in range(count):
            if rng.random() < 0.01:
                counts = rng.integers(1, 400, size=int(rng.integers(20, 400))).tolist()
                segmentation = f'{{"counts":{json.dumps(counts, separators=(",", ":"))},"size":[480,640]}}'
                crowd = 1
            else:
                points = int(rng.integers(8, 61))
                segmentation = f"[[{_floats(rng.uniform(0, 480, size=2 * points))}]]"
                crowd = 0
            box = _floats(rng.uniform(0, 400, size=4))
            f.write(("," if k else "") + f'{{"segmentation":{segmentation},"area":{rng.uniform(10, 50000):.4f},'
                    f'"iscrowd":{crowd},"image_id":{int(image_of[k])},"bbox":[{box}],'
                    f'"category_id":{int(rng.integers(1, 91))},"id":{k + 1}}}')
        f.write('],"categories":[' + ",".join(
            f'{{"supercategory":"thing","id":{c},"name":"class{c}"}}' for c in range(1, 91)) + "]}")
    os.replace(tmp, path)


MEASURE = """
import json, sys, time
from pathlib import Path
try:
    from cocoseg.masks.convert import index_split
except ModuleNotFoundError:  # an earlier commit's source, from before the stage packages
    from cocoseg.convert import index_split
start = time.perf_counter()
index_split(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))
seconds = time.perf_counter() - start
peak = int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
print(json.dumps({"seconds": seconds, "peak_kib": peak}))
"""  # VmHWM: this process's own peak (ru_maxrss keeps a forking parent's)


def measure(source: Path, annotations: Path, shards: int, scratch: Path) -> dict:
    with tempfile.TemporaryDirectory(dir=scratch) as out:
        env = {**os.environ, "PYTHONPATH": str(source)}
        done = subprocess.run([sys.executable, "-c", MEASURE, str(annotations), str(Path(out) / "index"), str(shards)],
                              env=env, capture_output=True, text=True, check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=118_287, help="images in the generated file")
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=1, help="runs per method; the fastest counts")
    parser.add_argument("--against", nargs="*", default=[], help="earlier commits to measure on the same file")
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "cocoseg-bench-index")
    args = parser.parse_args()
    args.scratch.mkdir(parents=True, exist_ok=True)
    annotations = args.scratch / f"coco-like-{args.images}.json"
    if not annotations.exists():
        print(f"writing {annotations} ...", file=sys.stderr, flush=True)
        write_coco_like(annotations, args.images)
    size_mib = annotations.stat().st_size / 2**20
    sources = {"this code": REPO / "src", **{c: source_at(c, Path(tempfile.mkdtemp(dir=args.scratch)))
                                              for c in args.against}}
    rows = []
    for name, source in sources.items():
        runs = [measure(source, annotations, args.shards, args.scratch) for _ in range(args.repeat)]
        best = min(runs, key=lambda r: r["seconds"])
        rows.append((name, best["seconds"], max(r["peak_kib"] for r in runs) / 1024))
        print(f"{name}: {best['seconds']:.1f} s, peak {rows[-1][2]:.0f} MiB", file=sys.stderr, flush=True)
    base_seconds, base_peak = rows[0][1], rows[0][2]
    print(f"\n{annotations.name}: {size_mib:.0f} MiB, {args.images} images, {args.shards} shards\n")
    print("| code | seconds | peak MiB | peak / file size | time vs this code | peak vs this code |")
    print("|---|---|---|---|---|---|")
    for name, seconds, peak in rows:
        print(f"| {name} | {seconds:.1f} | {peak:.0f} | {peak / size_mib:.2f}x | {seconds / base_seconds:.2f}x | "
              f"{peak / base_peak:.2f}x |")


if __name__ == "__main__":
    main()
