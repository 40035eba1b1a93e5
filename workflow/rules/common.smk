import os
import re

from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")

SPLITS = list(config["splits"])


wildcard_constraints:
    split="|".join(re.escape(name) for name in SPLITS),
    shard=r"\d+",


def split_config(wildcards):
    return config["splits"][wildcards.split]


def shard_dirs(wildcards):
    shards = split_config(wildcards)["shards"]
    return [f"results/masks/{wildcards.split}/shards/{i}" for i in range(shards)]


def mask_options():
    """Optional `cocoseg index` arguments from the config, as a list for `{params:q}`."""
    options = []
    if config["classes"]:
        options += ["--classes", *map(str, config["classes"])]
    if config["masks"]["max_images"]:
        options += ["--max-images", str(config["masks"]["max_images"])]
    return options


def demo_split_options():
    return [
        word
        for name, count in config["demo"]["splits"].items()
        for word in ("--split", name, str(count))
    ]


def final_targets():
    return expand("results/masks/{split}/manifest.csv", split=SPLITS)
