"""Benchmark scripts that cannot run here still end with one clear line, never a traceback."""

import subprocess
import sys

import pytest
import torch

from conftest import REPO


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the benchmark would run in full")
def test_gpu_benchmark_without_a_gpu_says_so_in_one_line():
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_gpu.py")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == "bench_gpu: no usable CUDA GPU here; run it on a GPU machine"
