"""The report stage (workflow/rules/report.smk): comparison tables, statistics over seeds, plots,
REPORT.md, best.json (the winner a script reads) and the top-two pictures.

Everything here reads files the earlier stages wrote; no number is typed in by hand. The
narrative lives in the Jinja template (`workflow/report/REPORT.md.jinja`).

May import `cocoseg.shared`, `cocoseg.masks`, `cocoseg.training` and `cocoseg.evaluation`.
Kept empty so the Snakefile can read `plot_names` and `best_file` without pandas or torch.
"""
