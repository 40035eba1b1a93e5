"""The report's statistics: which variants no other beats on both speed and accuracy, and whether
the best one's lead is larger than seed noise."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

NOISE_RULE = "the lead exceeds twice the standard error of the difference of the means, sqrt(s1²/n1 + s2²/n2)"


def pareto_front(speed: pd.Series, accuracy: pd.Series) -> pd.Series:
    """True where no other point is at least as fast and as accurate, and strictly better in one."""
    s, a = speed.to_numpy(), accuracy.to_numpy()
    dominated = [bool(((s >= s[i]) & (a >= a[i]) & ((s > s[i]) | (a > a[i]))).any()) for i in range(len(s))]
    return pd.Series(np.logical_not(dominated), index=speed.index)


def verdict(part: pd.DataFrame) -> dict:
    """The best variant of one split and whether its lead over the runner-up is beyond seed noise."""
    ranked = part.sort_values("miou_mean", ascending=False)
    best = ranked.iloc[0]
    result = {"best": best, "runner_up": None, "lead": None, "standard_error": None, "beyond_noise": None}
    if len(ranked) < 2:
        return result
    second = ranked.iloc[1]
    result["runner_up"], result["lead"] = second, best["miou_mean"] - second["miou_mean"]
    if min(best["seeds"], second["seeds"]) >= 2:
        se = math.sqrt(best["miou_std"] ** 2 / best["seeds"] + second["miou_std"] ** 2 / second["seeds"])
        result["standard_error"], result["beyond_noise"] = se, bool(result["lead"] > 2 * se)
    return result


TIMING_SPREAD = 0.25  # a timing whose std over seeds exceeds this share of its mean is flagged
TIMINGS = {"inference_images_per_s": "inference images/s", "train_seconds": "training time"}


def unsteady_timings(table: pd.DataFrame, limit: float = TIMING_SPREAD) -> list[str]:
    """Timings whose spread over seeds exceeds `limit` of their mean, one phrase each: seeds of
    one variant do the same work, so such a spread says the machine was busy, not the model slow."""
    found = []
    for metric, name in TIMINGS.items():
        spread = table[f"{metric}_std"] / table[f"{metric}_mean"]
        for variant, split, share in zip(table["variant"], table["split"], spread):
            if share > limit:
                found.append(f"{name} of {variant} ({split}) varied by {share:.0%} of its mean")
    return found


UNRANKED_SETTINGS = {"name", "seed"}  # differ between variants or runs by construction


def main_effects(table: pd.DataFrame, configs: dict[str, dict]) -> pd.DataFrame:
    """For each setting that differs between variants (architecture, encoder, size, grid keys):
    the mean mIoU of the variants with each value, over everything else, and the spread between
    them. Settings are ordered by how far apart their values' means lie: which choice moves the
    result most. `configs`: each variant's settings (summary.json's `config`)."""
    rows = []
    for split, part in table.groupby("split", sort=False):
        settings = pd.DataFrame({variant: {k: str(v) for k, v in configs[variant].items()}
                                 for variant in part["variant"]}).T
        varying = [key for key in settings.columns if key not in UNRANKED_SETTINGS and settings[key].nunique() > 1]
        scores = part.set_index("variant")["miou_mean"]
        for key in varying:
            grouped = scores.groupby(settings.loc[scores.index, key])
            effect = grouped.mean()
            for value, mean in effect.items():
                rows.append({"split": split, "setting": key, "value": value, "variants": int(grouped.size()[value]),
                             "miou_mean": mean, "miou_std": grouped.std(ddof=1)[value],
                             "setting_range": effect.max() - effect.min()})
    columns = ["split", "setting", "value", "variants", "miou_mean", "miou_std", "setting_range"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values(["split", "setting_range", "setting", "miou_mean"], ascending=[True, False, True, False],
                             kind="stable").reset_index(drop=True)
