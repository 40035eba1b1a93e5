"""A COCO file's top-level arrays, one item at a time.

`StreamedFile` parses with ijson's C parser, one array per pass, so memory holds an item, not
the file: `json.load` needs about eight times the file's size (4 GB for a COCO-train-sized
514 MB file). Python's json reader accepts what ijson refuses (NaN, Infinity); such a file is
read whole (`WholeFile`). Faults are said in `read_json`'s words either way.
"""

from __future__ import annotations

import os
from typing import Iterator

import ijson

from cocoseg.shared.errors import InputError
from cocoseg.shared.files import read_json


class NotStreamable(Exception):
    """ijson refused a file that Python's json reader accepts: read it whole instead."""


def _missing(path, key: str) -> InputError:
    return InputError(f"{path}: not a COCO instance file: key '{key}' is missing")


def _not_a_list(path, key: str) -> InputError:
    return InputError(f"{path}: '{key}' is not a list")


class StreamedFile:
    """The arrays of a COCO file on disk, parsed as a stream."""

    def __init__(self, path: str | os.PathLike):
        self.path = path

    def _open(self):
        try:
            return open(self.path, "rb")
        except FileNotFoundError:
            raise InputError(f"{self.path}: file not found") from None
        except OSError as e:
            raise InputError(f"{self.path}: cannot read: {e.strerror or e}") from None

    def _refused(self, error: Exception) -> Exception:
        """The file's fault in `read_json`'s words (read whole only on this path)."""
        read_json(self.path, "a COCO file")
        return NotStreamable(str(error))

    def items(self, key: str) -> Iterator:
        """The items of the top-level array `key`, numbers as `json` gives them; none if it is not one."""
        with self._open() as f:
            try:
                yield from ijson.items(f, f"{key}.item", use_float=True)
            except (ijson.JSONError, UnicodeDecodeError) as e:
                raise self._refused(e) from None

    def check_array(self, key: str) -> None:
        """Why `key` gave no items: missing or not a list (an empty list is fine). Walks the
        parser's events up to the key: only on the paths where an array gave no items."""
        with self._open() as f:
            try:
                events = ijson.parse(f, use_float=True)
                if next(events, (None, None, None))[1] != "start_map":
                    raise InputError(f"{self.path}: not a COCO file: the top level is not a JSON object")
                event = next((event for prefix, event, _ in events if prefix == key and event != "map_key"), None)
            except (ijson.JSONError, UnicodeDecodeError) as e:
                raise self._refused(e) from None
        if event is None:
            raise _missing(self.path, key)
        if event != "start_array":
            raise _not_a_list(self.path, key)


class WholeFile:
    """The arrays of a COCO file read whole by `read_json`."""

    def __init__(self, path: str | os.PathLike):
        self.path, self.data = path, read_json(path, "a COCO file")

    def items(self, key: str) -> Iterator:
        value = self.data.get(key)
        return iter(value if isinstance(value, list) else ())

    def check_array(self, key: str) -> None:
        if key not in self.data:
            raise _missing(self.path, key)
        if not isinstance(self.data[key], list):
            raise _not_a_list(self.path, key)
