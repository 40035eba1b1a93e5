"""Where a job runs: accelerator and precision it resolves to, its name, memory and CPUs.

Shared by training, evaluation and prediction.
"""

from __future__ import annotations

import os
import platform
import resource
import warnings

import torch


def resolve_accelerator(accelerator: str) -> str:
    """`auto` means the GPU when one is usable; a job given a GPU it cannot use falls back to CPU."""
    if accelerator == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if accelerator == "gpu" and not torch.cuda.is_available():
        warnings.warn("a GPU was asked for but CUDA is not usable here: training on the CPU")
        return "cpu"
    return accelerator


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


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def default_workers() -> int:
    return len(os.sched_getaffinity(0))
