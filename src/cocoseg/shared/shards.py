"""Sharding: a list cut into near-equal contiguous runs, one per job, and the jobs' folders joined
again in order. The mask stage and prediction both shard this way."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

from cocoseg.shared.errors import InputError
from cocoseg.shared.files import hard_link
from cocoseg.shared.manifests import OK


def shard_share(items: list, shard: int, shards: int) -> list:
    """Shard `shard` of `shards`: a contiguous run of `items`, the runs in order and near equal."""
    if not 0 <= shard < shards:
        raise InputError(f"shard {shard}: must be at least 0 and below the shard count {shards}")
    return items[len(items) * shard // shards: len(items) * (shard + 1) // shards]


def gather_shards(shard_dirs: Iterable[Path], output_dir: Path, read_rows: Callable[[Path], list[dict]],
                  files_of: Callable[[Path, dict], list[str]]) -> list[dict]:
    """Every shard's manifest rows, in shard order; the files of each usable row (`files_of`:
    paths relative to the shard folder) hard-linked to the same place under `output_dir`, so
    joining costs no copy."""
    rows = []
    for shard_dir in map(Path, shard_dirs):
        for row in read_rows(shard_dir):
            if row["status"] == OK:
                for relative in files_of(shard_dir, row):
                    hard_link(shard_dir / relative, Path(output_dir) / relative)
            rows.append(row)
    return rows
