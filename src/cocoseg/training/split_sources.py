"""Where a job reads its splits' samples: the split folders (two files per sample), their packed
parts on the shared file system (`masks.packed`: a few large files), or a copy of those parts on
the node's local disk, made when the job starts and removed when it ends (staging).

One copy per job: the other processes of a multi-process run find it in `STAGED_VARIABLE`,
which they inherit from the process that staged.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from cocoseg.masks.packed import PACKED, PackedSplit, packed_bytes, stage
from cocoseg.training.samples import SplitFiles, SplitFolder

STAGED_VARIABLE = "COCOSEG_STAGED"  # JSON: packed folder -> its staged copy


@dataclass(frozen=True)
class ReadFrom:
    """How a job reads its splits: `packed` parts (else the folders), copied to `stage_dir` first
    where one is given."""

    packed: bool = False
    stage_dir: Path | None = None


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def opened_splits(split_dirs: list[Path], read_from: ReadFrom) -> Iterator[tuple[dict[Path, SplitFiles], dict]]:
    """Each split's samples, and what summary.json records of how they were read (the staging's
    seconds and size). Staged copies are removed when the block ends, however it ends."""
    split_dirs = list(dict.fromkeys(Path(d) for d in split_dirs))
    if not read_from.packed:
        yield {d: SplitFolder(d) for d in split_dirs}, {"read": "folder"}
        return
    inherited = json.loads(os.environ.get(STAGED_VARIABLE, "{}"))
    places, made, seconds, size = {}, [], 0.0, 0
    try:
        for split_dir in split_dirs:
            packed = split_dir / PACKED
            if read_from.stage_dir is None:
                places[split_dir] = packed
            elif str(packed) in inherited:
                places[split_dir] = Path(inherited[str(packed)])
            else:
                start = time.perf_counter()
                places[split_dir] = stage(packed, read_from.stage_dir)
                made.append(places[split_dir])
                took, copied = time.perf_counter() - start, packed_bytes(packed)
                seconds, size = seconds + took, size + copied
                _say(f"staged {packed} ({copied / 1e6:.0f} MB) to {places[split_dir]} in {took:.1f} s")
        os.environ[STAGED_VARIABLE] = json.dumps({str(d / PACKED): str(p) for d, p in places.items()})
        staging = None if read_from.stage_dir is None else {
            "dir": str(read_from.stage_dir), "seconds": seconds, "megabytes": size / 1e6}
        yield {d: PackedSplit(p, d) for d, p in places.items()}, {"read": "packed", "staging": staging}
    finally:
        for folder in made:
            shutil.rmtree(folder, ignore_errors=True)
