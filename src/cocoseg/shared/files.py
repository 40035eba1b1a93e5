"""File helpers shared by every stage: atomic writes and paths that cannot escape their root."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Iterator, Sequence

from cocoseg.shared.errors import InputError, first_line


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_current_umask()  # what open() would give; mkstemp's 0600 would leak out


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`, renamed onto it only if the block succeeds.

    A killed job therefore never leaves a half-written file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _digest():
    return hashlib.blake2b(digest_size=12)


def checksum(data: bytes) -> str:
    """Content checksum of bytes in memory (a mask as written), as `file_checksum` gives for a file."""
    digest = _digest()
    digest.update(data)
    return digest.hexdigest()


def file_checksum(path: str | os.PathLike) -> str:
    """Content checksum of a file, read in blocks."""
    digest = _digest()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike, obj) -> None:
    write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Sequence[Sequence]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)


def read_csv(path: str | os.PathLike, what: str = "a CSV file", columns: Sequence[str] = ()) -> list[dict[str, str]]:
    """A CSV file's rows, or one line naming the file and its fault: missing, not text, without
    the `columns` the format has (`what`: the format, in the message), or a row cut short."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"{path}: {_read_fault(e)}") from None
    if missing := [c for c in columns if c not in (reader.fieldnames or [])]:
        raise InputError(f"{path}: not {what} (no column {', '.join(missing)})")
    if cut := next((n for n, row in enumerate(rows, 2) if None in row.values() or None in row), None):
        raise InputError(f"{path}: line {cut} does not have the header's {len(reader.fieldnames)} fields "
                         f"(a file cut short or written by something else)")
    return rows


def safe_relative(name: str) -> PurePosixPath | None:
    """Return `name` as a relative path that stays inside its folder, or None if it would not.

    COCO `file_name`s come from labelling tools; `..`, absolute paths and drive letters must
    never make us read or write outside the folders the user gave.
    """
    if not isinstance(name, str) or not name or "\x00" in name or "\\" in name:
        return None
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts or ":" in rel.parts[0]:
        return None
    if rel.name in ("", "."):
        return None
    return rel


def _make_room(target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()


def hard_link(source: Path, target: Path) -> None:
    """Hard-link `source` itself (a symlink stays a symlink) at `target`; copy across file systems."""
    _make_room(target)
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError:
        shutil.copy2(source, target, follow_symlinks=False)


def link_or_copy(source: Path, target: Path, how: str) -> None:
    """Place `source` at `target` without duplicating data unless asked (`copy`)."""
    _make_room(target)
    if how == "symlink":
        os.symlink(os.path.abspath(source), target)
    elif how == "hardlink":
        try:
            os.link(source, target)
        except OSError:  # another file system: fall back to a copy
            shutil.copy2(source, target)
    elif how == "copy":
        shutil.copy2(source, target)
    else:
        raise ValueError(f"unknown link mode {how!r}")


def output_problem(path: str | os.PathLike, is_file: bool = False) -> str | None:
    """Why `path` cannot be written as an output folder (or file), or None.

    Checked before any work: a folder under a regular file would otherwise fail midway with a
    traceback.
    """
    path = Path(path)
    for parent in [path, *path.parents] if not is_file else list(path.parents):
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                return f"{path}: cannot be written: {parent} exists and is not a folder"
            return None
    return None


def _read_fault(error: Exception) -> str:
    """Why a text file could not be read, in a few words."""
    if isinstance(error, FileNotFoundError):
        return "file not found"
    if isinstance(error, UnicodeDecodeError):
        return f"not UTF-8 text: {error.reason}"
    if isinstance(error, json.JSONDecodeError):
        return f"invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"
    if isinstance(error, OSError):
        return f"cannot read: {error.strerror or error}"
    return f"not readable: {first_line(error)}"


def is_integer(value) -> bool:
    """A JSON integer: Python's json and ijson give true and false as bools, which are ints too."""
    return isinstance(value, int) and not isinstance(value, bool)


def read_json(path: str | os.PathLike, what: str = "a JSON object file", keys: Sequence[str] = ()) -> dict:
    """A whole JSON object file (small files; and the precise message of a malformed one), or one
    line naming the file and its fault; `keys`: those the format always has (`what`: the format,
    in the message), so another file of the same kind is told apart."""
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: {_read_fault(e)}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: not {what}: the top level is not a JSON object")
    if missing := [key for key in keys if key not in data]:
        raise InputError(f"{path}: not {what} (no {', '.join(missing)})")
    return data
