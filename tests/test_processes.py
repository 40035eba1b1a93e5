"""Processes a job starts end with their parent, even when blocked where no signal handler runs."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import REPO


def alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def run_parent(tmp_path, child_code: str) -> tuple[subprocess.Popen, int]:
    """A parent process running `child_code`, which writes the pid to watch to `pid` and blocks."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(child_code))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path / "pid")], env=env, start_new_session=True)
    deadline = time.time() + 60
    while not (tmp_path / "pid").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    return parent, int((tmp_path / "pid").read_text())


def check_ends_with_parent(tmp_path, code: str) -> None:
    parent, child = run_parent(tmp_path, code)
    try:
        assert alive(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.time() + 10
        while alive(child) and time.time() < deadline:
            time.sleep(0.05)
        assert not alive(child), "the child outlived its killed parent"
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)


def test_a_child_that_ignores_sigterm_and_blocks_ends_with_its_parent(tmp_path):
    check_ends_with_parent(tmp_path, """
        import os, signal, sys, time
        from cocoseg.shared.processes import end_with_parent
        child = os.fork()
        if child == 0:
            end_with_parent()
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            open(sys.argv[1], "w").write(str(os.getpid()))
            while True:
                time.sleep(60)
        os.waitpid(child, 0)
    """)


@pytest.mark.slow
def test_a_loader_worker_blocked_in_a_read_ends_with_its_parent(tmp_path):
    """torch's worker watchdog looks at its parent only between samples; one blocked inside a read
    (a hung network file system) would otherwise stay."""
    check_ends_with_parent(tmp_path, """
        import os, sys, time
        from torch.utils.data import DataLoader, Dataset
        from cocoseg.training.data import worker_start

        class Hangs(Dataset):
            def __len__(self):
                return 1
            def __getitem__(self, index):
                open(sys.argv[1], "w").write(str(os.getpid()))
                while True:
                    time.sleep(60)

        next(iter(DataLoader(Hangs(), num_workers=1, worker_init_fn=worker_start)))
    """)
