"""Benchmark scripts that cannot run here still end with one clear line, never a traceback."""

import re
import subprocess
import sys

import pytest
import torch
from conftest import REPO

pytestmark = pytest.mark.slow  # each test runs a benchmark: outside the fast path (-m "not slow")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the benchmark would run in full")
def test_gpu_benchmark_without_a_gpu_says_so_in_one_line():
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_gpu.py")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == "bench_gpu: no usable CUDA GPU here; run it on a GPU machine"


def test_loader_benchmark_prints_its_table():
    """The loader benchmark runs end to end on the repository's real images (small and short here)."""
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_loader.py"), "--size", "128",
                             "--passes", "1", "--enlarge", "2"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [[cell.strip() for cell in line.strip("|").split("|")]
            for line in result.stdout.splitlines() if line.startswith("| coco-real |")]
    padding = {cells[1]: float(cells[3].rstrip("%")) for cells in rows}
    assert set(padding) == {"earlier (fit, 0.75-1.25, any crop)", "fit", "short_side", "short_side, 0.75-2.0"}
    assert all(cells[2] == "14" and float(cells[4]) > 0 and float(cells[5]) > 0 for cells in rows)
    assert padding["short_side"] < padding["earlier (fit, 0.75-1.25, any crop)"] / 2


def test_gpu_benchmark_runs_its_settings_on_the_cpu():
    """`--cpu` runs the GPU benchmark's code end to end, so a GPU's time is not lost to a broken script."""
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_gpu.py"), "--cpu", "--encoders", "resnet18",
                             "--size", "64", "--batch", "2", "--steps", "2", "--workers", "1"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line.strip("|").split("|") for line in result.stdout.splitlines() if line.startswith("| resnet18 |")]
    settings = [(cells[1].strip(), cells[2].strip()) for cells in rows]
    assert settings == [("32-true", "no"), ("32-true", "yes"), ("bf16-mixed", "no"), ("bf16-mixed", "yes")]
    assert all(float(cells[4]) > 0 for cells in rows)


def test_bootstrap_benchmark_prints_both_methods_and_their_ratio():
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_bootstrap.py"), "--variants", "3",
                             "--seeds", "2", "--images", "500", "--classes", "10", "--resamples", "500",
                             "--loop-resamples", "10"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line.strip("|").split("|") for line in result.stdout.splitlines() if line.startswith("| ")]
    assert [cells[0].split()[0] for cells in rows] == ["method", "loop", "vectorised"]
    assert float(rows[1][1]) > 0 and float(rows[2][1]) > 0 and "faster" in rows[2][2]


def test_shared_fs_benchmark_counts_the_files_each_epoch_opens():
    """Packed parts open one file per part in the first epoch and none after (held open); the
    folder opens each sample's image (Pillow, then OpenCV) and mask every epoch."""
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_shared_fs.py"), "--copies", "2",
                             "--size", "128", "--epochs", "2", "--part-mb", "2"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    images, parts = re.search(r"(\d+) images, (\d+) part\(s\)", result.stdout).groups()
    rows = {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")]
                                              for line in result.stdout.splitlines()) if cells[0] in
            ("folder", "packed", "staged")}
    assert int(images) == 28 and int(parts) >= 2
    assert rows["folder"][:2] == [str(3 * 28), str(3 * 28)]
    assert rows["packed"][:2] == rows["staged"][:2] == [parts, "0"]
    assert all(float(cells[2]) > 0 for cells in rows.values())
