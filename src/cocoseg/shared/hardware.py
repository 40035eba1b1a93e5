"""Where a job runs: the accelerator and precision it resolves to, how it shares its CPUs, the
device's name and the memory it used.

Shared by training, evaluation and prediction.
"""

from __future__ import annotations

import os
import platform
import resource
import socket
import sys
from dataclasses import dataclass

import torch

from cocoseg.shared.errors import InputError, first_line


def cuda_problem() -> str | None:
    """Why CUDA cannot be used here, in CUDA's own words where it gives any; None when it can."""
    if torch.cuda.is_available():
        return None
    if torch.version.cuda is None:
        return "this PyTorch is a CPU-only build"
    try:
        torch.cuda.init()
    except Exception as e:  # no driver, a driver too old, no device
        return first_line(e)
    return f"no GPU visible (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"


def resolve_accelerator(accelerator: str, gpu_requested: bool = False, allow_cpu_fallback: bool = False) -> str:
    """`auto` means the GPU when one is usable.

    A job that asked for a GPU (`gpu_requested`: the scheduler was asked for one, or
    `accelerator: gpu`) and landed where CUDA is unusable stops with one line naming the node
    and what CUDA said, rather than run for hours on the CPU unnoticed; with
    `allow_cpu_fallback` it runs on the CPU and says so first thing in its log.
    """
    if not (gpu_requested or accelerator == "gpu"):
        return ("gpu" if torch.cuda.is_available() else "cpu") if accelerator == "auto" else accelerator
    problem = cuda_problem()
    if problem is None:
        return "gpu"
    where = f"{socket.gethostname()}: a GPU was asked for, but CUDA is not usable here ({problem})"
    if not allow_cpu_fallback:
        raise InputError(f"{where}; run where a GPU is, or allow the CPU (train.allow_cpu_fallback: true, "
                         f"--allow-cpu-fallback)")
    print(f"warning: {where}: running on the CPU (allow_cpu_fallback)", file=sys.stderr, flush=True)
    return "cpu"


@dataclass(frozen=True)
class CpuShare:
    """How one process of a job uses its share of the job's CPUs."""

    cpus: int  # this process's share
    loader_workers: int  # decoding processes it starts
    threads: int  # torch intra-op threads


def share_cpus(cpus: int, processes: int, accelerator: str) -> CpuShare:
    """Split a job's CPUs over its processes, then within each between loader workers and threads.

    On a GPU the network runs on the card: one thread drives it and the other CPUs decode. On
    the CPU the network's arithmetic is the work: every CPU of the share computes, and one
    loader worker (none on a single CPU) prepares the next batch meanwhile; decoding costs a few
    percent of a training step there. Threads beyond the CPUs held make torch's workers wait on
    each other (each spins while it waits), which costs far more than the share they lose.
    """
    share = max(1, cpus // max(1, processes))
    if accelerator == "gpu":
        return CpuShare(share, loader_workers=max(1, share - 1), threads=1)
    return CpuShare(share, loader_workers=1 if share > 1 else 0, threads=share)


def resolve_precision(precision: str, accelerator: str) -> str:
    """`auto`: bf16-mixed on GPUs that have it, 16-mixed on older ones, 32 on the CPU."""
    if precision != "auto":
        return precision
    if accelerator == "gpu":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def peak_memory_mb(accelerator: str) -> float:
    if accelerator == "gpu":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def device_name(accelerator: str) -> str:
    if accelerator == "gpu":
        return torch.cuda.get_device_name()
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def default_cpus() -> int:
    """The CPUs this process may run on (a job's allocation under SLURM or taskset)."""
    return len(os.sched_getaffinity(0))
