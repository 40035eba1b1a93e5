"""Comparison tables, plots and REPORT.md from a workflow's results folder.

Everything here reads files the earlier stages wrote; no number is typed in by hand. Each
variant is trained once per seed: tables give the mean and the standard deviation over seeds,
and the summary says whether the best variant's lead is larger than seed noise. The narrative
lives in the Jinja template (`workflow/report/REPORT.md.jinja`).
"""

from .document import build

__all__ = ["build"]
