"""What the workflow does before any job: check config paths, clear locks left by a crash, and
export the source tree the jobs run from.

Imported by the Snakefile, so kept free of torch and other heavy imports.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

from .variants import is_weights_file

LOCK_OWNER = "cocoseg-lock-owner.json"  # in .snakemake/: which process holds the locks


def missing_config_paths(config: dict, produced: set[str]) -> list[str]:
    """One line per path the config names (split files and folders, an encoder-weights file)
    that neither exists nor is made by a rule."""
    paths = {f"splits.{name}.{key}": split[key] for name, split in config["splits"].items()
             for key in ("annotations", "images")}
    weights = config["model"]["encoder_weights"]
    if is_weights_file(weights):
        paths["model.encoder_weights"] = weights
    return [f"config {key}: {path} does not exist" for key, path in paths.items()
            if path not in produced and not os.path.exists(path)]


def export_source_path(source: str) -> None:
    """Put the workflow's own src/ first on PYTHONPATH, which every job inherits."""
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))


def record_lock_owner(state_dir: Path) -> None:
    """Write which process holds Snakemake's locks, so a later run can tell that it died."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / LOCK_OWNER).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def clear_stale_locks(state_dir: Path) -> str | None:
    """Remove the locks of a run that was killed (same host, its process gone); say what was done.

    Locks of a live run, of a run on another host, or without a recorded owner are kept, so
    two runs never write the same files at once.
    """
    locks, owner_file = Path(state_dir) / "locks", Path(state_dir) / LOCK_OWNER
    if not locks.is_dir() or not any(locks.iterdir()) or not owner_file.is_file():
        return None
    owner = json.loads(owner_file.read_text())
    if owner.get("host") != socket.gethostname() or _alive(int(owner.get("pid", 0))):
        return None
    shutil.rmtree(locks)
    owner_file.unlink()
    return f"removed the locks of a run that ended without cleaning up (process {owner['pid']})"
