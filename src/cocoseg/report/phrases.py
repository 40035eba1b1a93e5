"""The summary's answer in words, from the statistics: what each setting contributes and what
each step up in training cost buys. Phrases only; the template places them."""

from __future__ import annotations

import pandas as pd


def contributions(ranked: pd.DataFrame) -> list[str]:
    """One phrase per setting (`statistics.ranked_settings` of one split), largest effect first."""
    return [f"**{row.setting}** ({row.best_value} {row.best_miou:.3f} against {row.worst_value} "
            f"{row.worst_miou:.3f}: {row.setting_range:.3f} apart)" for row in ranked.itertuples()]


def within_spread(ranked: pd.DataFrame, spread: float | None) -> list[str]:
    """Settings whose values lie closer than the seeds' typical spread (None: one seed, unknown)."""
    return [] if spread is None else list(ranked.loc[ranked["setting_range"] < spread, "setting"])


def cost_steps(steps: pd.DataFrame) -> list[str]:
    """One phrase per step of `statistics.cost_steps`, cheapest first."""
    return [f"{row.from_variant} to {row.variant} adds {row.miou_gain:.3f} mIoU for {row.cost_ratio:.1f}x the "
            f"training cost, at {row.speed_ratio:.2f}x the inference speed" for row in steps.itertuples()]
