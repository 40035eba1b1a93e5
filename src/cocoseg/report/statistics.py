"""The report's statistics: which variants no other beats on both speed and accuracy, and whether
the best one's lead is larger than seed noise."""

from __future__ import annotations

import itertools
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
    """The best variant of one split and whether its lead over the runner-up is beyond noise.

    With bootstrap intervals (`part` carrying `diff_low`/`diff_high`, see `bootstrap`), the lead
    is beyond noise when the interval of the runner-up's difference from the best excludes 0;
    without them (no per-image counts), when it exceeds twice the seeds' standard error.
    """
    ranked = part.sort_values("miou_mean", ascending=False, kind="stable")
    best = ranked.iloc[0]
    result = {"best": best, "runner_up": None, "lead": None, "standard_error": None, "beyond_noise": None,
              "interval": None, "tied": []}
    if len(ranked) < 2:
        return result
    second = ranked.iloc[1]
    result["runner_up"], result["lead"] = second, best["miou_mean"] - second["miou_mean"]
    if "diff_low" in part and not pd.isna(second["diff_low"]):
        result["interval"] = (-second["diff_high"], -second["diff_low"])
        result["beyond_noise"] = bool(second["distinguishable_from_best"])
        result["tied"] = [row["variant"] for _, row in ranked.iloc[1:].iterrows()
                          if not pd.isna(row["diff_low"]) and not row["distinguishable_from_best"]]
    elif min(best["seeds"], second["seeds"]) >= 2:
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


def setting_text(value) -> str:
    """A setting's value as the report writes it: sizes as HxW."""
    return "x".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def varying_settings(variants: list[str], configs: dict[str, dict]) -> pd.DataFrame:
    """One row per variant, one column per setting that differs between them, values as text."""
    settings = pd.DataFrame({variant: {k: setting_text(v) for k, v in configs[variant].items()}
                             for variant in variants}).T
    return settings[[key for key in settings.columns if key not in UNRANKED_SETTINGS and settings[key].nunique() > 1]]


def main_effects(table: pd.DataFrame, configs: dict[str, dict]) -> pd.DataFrame:
    """For each setting that differs between variants (architecture, encoder, size, grid keys):
    the mean mIoU of the variants with each value, over everything else, and the spread between
    them. Settings are ordered by how far apart their values' means lie: which choice moves the
    result most. `configs`: each variant's settings (summary.json's `config`)."""
    rows = []
    for split, part in table.groupby("split", sort=False):
        scores = part.set_index("variant")["miou_mean"]
        settings = varying_settings(list(scores.index), configs)
        for key in settings.columns:
            grouped = scores.groupby(settings[key])
            effect = grouped.mean()
            for value, mean in effect.items():
                rows.append({"split": split, "setting": key, "value": value, "variants": int(grouped.size()[value]),
                             "miou_mean": mean, "miou_std": grouped.std(ddof=1)[value],
                             "setting_range": effect.max() - effect.min()})
    columns = ["split", "setting", "value", "variants", "miou_mean", "miou_std", "setting_range"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values(["split", "setting_range", "setting", "miou_mean"], ascending=[True, False, True, False],
                             kind="stable").reset_index(drop=True)


def interactions(table: pd.DataFrame, configs: dict[str, dict]) -> pd.DataFrame:
    """For each pair of varying settings whose grid is complete (every value of one tried with
    every value of the other): the mean mIoU of each pair of values, over everything else. A
    main effect that holds for one value of the other setting only shows here, not in the means."""
    rows = []
    for split, part in table.groupby("split", sort=False):
        scores = part.set_index("variant")["miou_mean"]
        settings = varying_settings(list(scores.index), configs)
        for first, second in itertools.combinations(settings.columns, 2):
            grouped = scores.groupby([settings[first], settings[second]])
            if len(grouped) < settings[first].nunique() * settings[second].nunique():
                continue  # incomplete: a missing cell would read as a value
            for (value_a, value_b), mean in grouped.mean().items():
                rows.append({"split": split, "setting_a": first, "value_a": value_a, "setting_b": second,
                             "value_b": value_b, "variants": int(grouped.size()[value_a, value_b]),
                             "miou_mean": mean})
    columns = ["split", "setting_a", "value_a", "setting_b", "value_b", "variants", "miou_mean"]
    return pd.DataFrame(rows, columns=columns)


def cost_steps(part: pd.DataFrame) -> pd.DataFrame:
    """The steps up in accuracy a user can buy with training cost: the variants no other beats on
    both cost and mIoU, cheapest first, each with what it adds over the one before. `part`: one
    split of the aggregated table."""
    front = part[pareto_front(-part["device_hours_mean"], part["miou_mean"])]
    front = front.sort_values(["device_hours_mean", "miou_mean"], kind="stable")
    previous = front.shift(1)
    return pd.DataFrame({
        "variant": front["variant"], "from_variant": previous["variant"],
        "miou_gain": front["miou_mean"] - previous["miou_mean"],
        "cost_ratio": front["device_hours_mean"] / previous["device_hours_mean"],
        "speed_ratio": front["inference_images_per_s_mean"] / previous["inference_images_per_s_mean"],
    }).iloc[1:].reset_index(drop=True)


def ranked_settings(effects: pd.DataFrame) -> pd.DataFrame:
    """One row per split and setting, the setting that moves mIoU most first: its best and worst
    value with their mean mIoU, and the range between them (from `main_effects`)."""
    rows = []
    for (split, setting), part in effects.groupby(["split", "setting"], sort=False):
        best, worst = part.loc[part["miou_mean"].idxmax()], part.loc[part["miou_mean"].idxmin()]
        rows.append({"split": split, "setting": setting, "best_value": best["value"], "best_miou": best["miou_mean"],
                     "worst_value": worst["value"], "worst_miou": worst["miou_mean"],
                     "setting_range": best["miou_mean"] - worst["miou_mean"]})
    return pd.DataFrame(rows, columns=["split", "setting", "best_value", "best_miou", "worst_value", "worst_miou",
                                       "setting_range"])


def typical_seed_spread(part: pd.DataFrame) -> float | None:
    """The mean over variants of mIoU's standard deviation over seeds (None with one seed): a
    setting whose values lie closer than this is not told apart by the run."""
    spread = part["miou_std"].mean()
    return None if pd.isna(spread) else float(spread)
