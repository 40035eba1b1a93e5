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


def test_loader_benchmark_prints_its_table():
    """The loader benchmark runs end to end on the repository's real images (small and short here)."""
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_loader.py"), "--size", "128",
                             "--passes", "1"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| coco-real |")]
    assert len(rows) == 1
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert cells[1] == "14" and all(float(cell) > 0 for cell in (cells[2], cells[3], cells[5], cells[6]))
