"""A split packed into a few large files, for shared file systems (Lustre, GPFS, NFS), where
opening two small files per sample per epoch loads the metadata server more than decoding
loads the node.

    OUT/packed/part-00000.tar  POSIX tar in WebDataset's layout, one sample after another:
    OUT/packed/part-00001.tar  <key>.<ext> (the image's bytes as the split folder links them),
    ...                        <key>.png (its mask), <key>.json (its manifest row)
    OUT/packed/index.json      each part's size and checksum; where each sample's image and mask
                               bytes lie (part, offset, size), by file name

Written from the split folder in manifest order, with tar headers that carry no time, owner or
mode of their own: the bytes depend only on the images, masks and manifest, so they are the same
for any shard count of the mask stage. A reader seeks to a sample's bytes, keeping each part open:
one open per part and process, not two per sample. This module alone writes and reads the format.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from cocoseg.masks.split_folder import read_manifest
from cocoseg.shared.errors import InputError
from cocoseg.shared.files import atomic_path, file_checksum, read_json, write_json

PACKED = "packed"  # the folder beside a split's images/ and masks/
INDEX = "index.json"
DEFAULT_PART_MB = 1000  # about 1 GB per part: few files, each long enough to read at full speed
FORMAT = 1


def part_name(number: int) -> str:
    return f"part-{number:05d}.tar"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> list[int]:
    """Append one member; returns the [offset, size] of its bytes in the tar file."""
    info = tarfile.TarInfo(name)  # mtime 0, mode 0o644, owner 0 and no names: nothing from this machine
    info.size = len(data)
    offset = tar.offset + len(info.tobuf(tar.format, tar.encoding, tar.errors))
    tar.addfile(info, io.BytesIO(data))
    return [offset, len(data)]


def _file_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot be packed: {e.strerror or e} (rerun the mask stage)") from None


def _closed(tar: tarfile.TarFile, number: int, samples: int) -> None:
    """Close a finished part and say so: a line per part, in the job's log."""
    tar.close()
    print(f"part {number + 1} written ({Path(tar.name).stat().st_size / 1e6:.0f} MB), {samples} samples so far",
          file=sys.stderr, flush=True)


def write_parts(split_dir: Path, rows: list[dict], folder: Path, part_mb: float) -> tuple[dict, int]:
    """The tar parts of `rows` in `folder`; returns where each sample's bytes lie, and the part count."""
    samples, tar, number = {}, None, -1
    for position, row in enumerate(rows):
        if tar is None or tar.offset >= part_mb * 1_000_000:
            if tar is not None:
                _closed(tar, number, position)
            number += 1
            tar = tarfile.open(folder / part_name(number), "w", format=tarfile.USTAR_FORMAT)
        key = f"{position:08d}"
        image = _file_bytes(split_dir / "images" / row["file_name"])
        mask = _file_bytes(split_dir / "masks" / row["mask"])
        suffix = PurePosixPath(row["file_name"]).suffix.lower() or ".img"
        samples[row["file_name"]] = {"part": number, "image": _add(tar, f"{key}{suffix}", image),
                                     "mask": _add(tar, f"{key}.png", mask), "mask_checksum": row["mask_checksum"]}
        _add(tar, f"{key}.json", json.dumps(row, sort_keys=True).encode())
    _closed(tar, number, len(rows))
    return samples, number + 1


def pack_split(split_dir: Path, part_mb: float = DEFAULT_PART_MB) -> dict:
    """Write `split_dir/packed/` from the split folder's usable images and masks (in a temporary
    folder renamed into place when complete); returns the index."""
    split_dir = Path(split_dir)
    rows = read_manifest(split_dir)
    work = split_dir / f".{PACKED}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        samples, count = write_parts(split_dir, rows, work, part_mb)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)  # no half-written pack left behind
        raise
    parts = [{"file": part_name(n), "bytes": (work / part_name(n)).stat().st_size,
              "checksum": file_checksum(work / part_name(n))} for n in range(count)]
    index = {"format": FORMAT, "parts": parts, "samples": samples}
    write_json(work / INDEX, index)
    shutil.rmtree(split_dir / PACKED, ignore_errors=True)
    os.replace(work, split_dir / PACKED)
    return index


def read_index(packed_dir: Path) -> dict:
    return read_json(Path(packed_dir) / INDEX, "an index.json of a packed split", ("format", "parts", "samples"))


class PackedSplit:
    """The samples of a packed split, read by seeking into parts held open (reopened after a fork:
    loader workers each hold their own)."""

    def __init__(self, packed_dir: Path, split_dir: Path | None = None):
        self.packed_dir = Path(packed_dir)
        self.split_dir = Path(split_dir) if split_dir is not None else self.packed_dir.parent  # its manifest's
        index = read_index(self.packed_dir)
        self.parts, self.samples = [part["file"] for part in index["parts"]], index["samples"]
        self._open: dict[int, object] = {}
        self._pid = os.getpid()

    def check(self, rows: list[dict]) -> None:
        """Stop before any work where the pack does not hold these manifest rows as they are."""
        for row in rows:
            sample = self.samples.get(row["file_name"])
            if sample is None or sample["mask_checksum"] != row["mask_checksum"]:
                state = "missing" if sample is None else "packed from another mask"
                raise InputError(f"{self.packed_dir}: {row['file_name']}: {state} (rerun the mask stage's packing)")
        for name in self.parts:
            if not (self.packed_dir / name).is_file():
                raise InputError(f"{self.packed_dir / name}: missing (rerun the mask stage's packing)")

    def where(self, row: dict, member: str) -> str:
        """The place of a sample's image or mask, for messages."""
        sample = self.samples[row["file_name"]]
        return f"{self.packed_dir / self.parts[sample['part']]} at byte {sample[member][0]} ({row['file_name']} {member})"

    def read(self, row: dict, member: str) -> io.BytesIO:
        """The bytes of a sample's `image` or `mask`, as a file object."""
        if os.getpid() != self._pid:  # a forked worker: the parent's file positions are shared
            self._open, self._pid = {}, os.getpid()
        sample = self.samples[row["file_name"]]
        part = sample["part"]
        if part not in self._open:
            self._open[part] = open(self.packed_dir / self.parts[part], "rb")  # held for the run
        handle = self._open[part]
        offset, size = sample[member]
        handle.seek(offset)
        data = handle.read(size)
        if len(data) != size:
            raise InputError(f"{self.where(row, member)}: cut short (rerun the mask stage's packing)")
        return io.BytesIO(data)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_open": {}}  # open files stay in their process


def packed_bytes(packed_dir: Path) -> int:
    return sum(part["bytes"] for part in read_index(packed_dir)["parts"]) + (Path(packed_dir) / INDEX).stat().st_size


def stage(packed_dir: Path, stage_root: Path) -> Path:
    """Copy a packed split to `stage_root` (a node's local disk), check each part's size and
    checksum against the index, and return the copy's folder. Stops in one line where the disk
    lacks the space."""
    packed_dir, stage_root = Path(packed_dir), Path(stage_root)
    index = read_index(packed_dir)
    stage_root.mkdir(parents=True, exist_ok=True)
    needed, free = packed_bytes(packed_dir), shutil.disk_usage(stage_root).free
    if needed > free:
        raise InputError(f"{stage_root}: staging {packed_dir} needs {needed / 1e6:.0f} MB, {free / 1e6:.0f} MB free")
    target = Path(tempfile.mkdtemp(prefix=f"cocoseg-{packed_dir.parent.name}-", dir=stage_root))  # one per job
    for part in index["parts"]:
        copy = target / part["file"]
        with atomic_path(copy) as tmp:
            shutil.copyfile(packed_dir / part["file"], tmp)
        if copy.stat().st_size != part["bytes"] or file_checksum(copy) != part["checksum"]:
            raise InputError(f"{copy}: differs from {packed_dir / part['file']} after copying (size or checksum)")
    shutil.copyfile(packed_dir / INDEX, target / INDEX)
    return target
