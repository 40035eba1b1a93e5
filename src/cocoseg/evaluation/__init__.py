"""The evaluation stage (workflow/rules/evaluate.smk): the one predictor that evaluation,
prediction, the report's top-two pictures and the export check all use, scoring a model over a
whole split, and the per-image counts the report resamples.

May import `cocoseg.shared`, `cocoseg.masks` and `cocoseg.training`.
"""
