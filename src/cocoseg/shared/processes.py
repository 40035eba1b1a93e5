"""The processes a job starts (extra DDP ranks, loader workers) end with the process that started
them, so a killed job leaves nothing behind."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def end_with_parent() -> None:
    """Have Linux SIGKILL this process when its parent ends (prctl PR_SET_PDEATHSIG).

    Without it, a rank blocked in a collective or a loader worker blocked on its queue outlives
    a parent killed by the scheduler or out of memory, holding its GPU and CPUs until the job's
    time limit. Does nothing elsewhere than Linux.
    """
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        return
    if os.getppid() != parent:  # the parent ended before the request took effect
        os._exit(1)
