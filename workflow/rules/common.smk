import os
import re
import sys
from pathlib import Path

from snakemake.utils import validate

# Rules and jobs run the package from this checkout's src/, installed or not (a conda env
# created by --sdm conda holds only third-party packages), also when another workflow uses this
# one as a module.
WORKFLOW_DIR = Path(str(workflow.current_basedir)).parent  # this file is workflow/rules/common.smk
SOURCE = str(WORKFLOW_DIR.parent / "src")
sys.path.insert(0, SOURCE)

from cocoseg.report.best_file import BEST
from cocoseg.shared.image_checks import MAX_PIXELS_VARIABLE
from cocoseg.report.plot_names import PLOTS, TOP_TWO_PLOT
from cocoseg.training.variants import expand as expand_variants
from cocoseg.training.variants import is_weights_file
from cocoseg.workflow_checks import (
    annotation_paths,
    clear_stale_locks,
    export_source_path,
    missing_config_paths,
    predict_problems,
    record_lock_owner,
    split_problems,
    time_limit_problem,
    training_minutes,
    unlabeled_choice,
)

export_source_path(SOURCE)

validate(config, schema="../schemas/config.schema.yaml")

SPLITS = list(config["splits"])
VARIANTS = expand_variants(config["model"], config["train"])
SEEDS = [str(seed) for seed in config["train"]["seeds"]]
EVAL_SPLITS = config["evaluate"]["splits"]
TRAIN_SPLIT = config["train"]["train_split"]
# Where the best epoch is chosen: "holdout" (carved from TRAIN_SPLIT) or a split name.
SELECTION = config["train"]["selection"]
CONFIG_FILES = [os.path.relpath(path) for path in workflow.configfiles]  # named in REPORT.md
PREDICT = config["predict"]
PREDICT_FOLDERS = "|".join(re.escape(name) for name in PREDICT["folders"]) or "(?!)"  # (?!): none
for key, names in (
    ("train.train_split", [TRAIN_SPLIT]),
    ("train.selection", [] if SELECTION == "holdout" else [SELECTION]),
    ("evaluate.splits", EVAL_SPLITS),
):
    for name in names:
        if name not in SPLITS:
            raise ValueError(f"config {key}: {name!r} is not one of splits ({', '.join(SPLITS)})")
DEMO_ANNOTATIONS = [
    f"results/demo/annotations/{split}{part}.json"
    for split in config["demo"]["splits"]
    for part in ("", "_stuff")
    if config["demo"]["stuff"] or not part
]
DEMO_OUTPUTS = {
    *DEMO_ANNOTATIONS,
    *(f"results/demo/images/{split}" for split in config["demo"]["splits"]),
}
# A run's group job: the partition's limit, then evaluation's and selection's minutes.
RUN_MINUTES = (
    config["time_limit_minutes"],
    config["evaluate"]["runtime_minutes"],
    config["evaluate"]["selection_runtime_minutes"],
)
for problem in split_problems(config["splits"]):  # first: the checks below read the splits
    raise ValueError(problem)
for problem in [
    *missing_config_paths(config, DEMO_OUTPUTS),
    *predict_problems(PREDICT, list(VARIANTS), SEEDS),
    time_limit_problem(*RUN_MINUTES),
]:
    if problem is None:
        continue
    raise ValueError(problem)
if workflow.is_main_process:  # once, not again in every cluster job
    from cocoseg.workflow_checks import config_problems

    for problem in config_problems(VARIANTS):
        raise ValueError(problem)
    if cleared := clear_stale_locks(".snakemake"):
        print(f"cocoseg: {cleared}", file=sys.stderr)
WEIGHTS = config["model"]["encoder_weights"]
UNLABELED = unlabeled_choice(config)  # one choice for every split, so they share one label map
os.environ[MAX_PIXELS_VARIABLE] = str(config["max_pixels"])  # every job inherits the one limit


wildcard_constraints:
    split="|".join(re.escape(name) for name in SPLITS),
    shard=r"\d+",
    variant="|".join(re.escape(name) for name in VARIANTS),
    exported="|".join(re.escape(name) for name in [BEST, *VARIANTS]),
    seed="|".join(re.escape(seed) for seed in SEEDS),
    encoder="|".join(re.escape(name) for name in config["model"]["encoders"]),


def split_config(wildcards):
    return config["splits"][wildcards.split]


def annotation_files(wildcards):
    return annotation_paths(split_config(wildcards))


def is_panoptic(wildcards):
    return split_config(wildcards).get("panoptic") is not None


def panoptic_masks(wildcards):
    """The folder of a panoptic split's PNGs (none for an instances split)."""
    return [split_config(wildcards)["panoptic"]["masks"]] if is_panoptic(wildcards) else []


def panoptic_options(wildcards, input):
    return ["--panoptic-masks", input.panoptic[0]] if input.panoptic else []


def shard_dirs(wildcards):
    shards = split_config(wildcards)["shards"]
    return [f"results/masks/{wildcards.split}/shards/{i}" for i in range(shards)]


def mask_options(wildcards):
    """Optional `cocoseg index` arguments from the config, as a list for `{params:q}`."""
    options = ["--unlabeled", UNLABELED]
    if config["masks"]["ignore_categories"]:
        options += ["--ignore-categories", *map(str, config["masks"]["ignore_categories"])]
    if is_panoptic(wildcards):
        options.append("--panoptic")
    if config["classes"]:
        options += ["--classes", *map(str, config["classes"])]
    if config["masks"]["max_images"]:
        options += ["--max-images", str(config["masks"]["max_images"])]
    return options


def index_memory_mb(wildcards, input):
    """The streamed index peaks below twice the JSON's size, plus the interpreter."""
    return int(2.5 * input.size_mb) + 500


def holdout_options(wildcards):
    """`cocoseg gather` flags: the training split holds images out when they choose the best epoch."""
    holdout = config["train"]["holdout"]
    if SELECTION != "holdout" or wildcards.split != TRAIN_SPLIT:
        return []
    options = [
        "--holdout-fraction",
        str(holdout["fraction"]),
        "--holdout-seed",
        str(holdout["seed"]),
    ]
    if holdout["count"]:
        options += ["--holdout-count", str(holdout["count"])]
    return options


def selection_options(wildcards, input):
    """`cocoseg train` flags naming the split that chooses the best epoch (none: the holdout)."""
    return [
        word for manifest in input.selection for word in ("--val-dir", os.path.dirname(manifest))
    ]


def demo_split_options():
    return [
        word
        for name, count in config["demo"]["splits"].items()
        for word in ("--split", name, str(count))
    ]


def weights_source(wildcards):
    """A local weights file is the input of its check; a name has none (it is fetched)."""
    return [WEIGHTS] if is_weights_file(WEIGHTS) else []


def train_weights(wildcards):
    """The checked or fetched encoder weights a training job loads (none for random init)."""
    return [f"results/weights/{VARIANTS[wildcards.variant].encoder}.pt"] if WEIGHTS else []


def weights_options(wildcards, input):
    return ["--encoder-weights", input.weights[0] if input.weights else "none"]


def train_options(wildcards):
    """`cocoseg train` flags for one variant and seed, as a list for `{params:q}`: the variant's
    settings as one JSON value, so a new setting reaches training without a word here."""
    return [
        *("--settings", VARIANTS[wildcards.variant].with_seed(wildcards.seed).to_json()),
        *read_options(config["train"]),
        *("--ddp-timeout-minutes", config["train"]["ddp_timeout_minutes"]),
        *("--checkpoint-minutes", config["train"]["checkpoint_minutes"]),
        *(["--keep-checkpoints"] if config["train"]["keep_checkpoints"] else []),
        *gpu_flags(wildcards.variant),
    ]


def run_variants(variant):
    """The variants a job may run: the one named, or all of them where the report chooses (best)."""
    return list(VARIANTS.values()) if variant == BEST else [VARIANTS[variant]]


def job_gpus(variant, processes=1):
    """The GPUs a job running `variant` asks for: one per process (training: the variant's
    devices; evaluation and prediction: one) when the variant trains on GPUs, else none. Where
    the report chooses, any variant may win, so a GPU is asked for if any trains on one."""
    return processes if any(v.gpu for v in run_variants(variant)) else 0


def gpu_flags(variant):
    """`--gpu` tells a job that it asked the scheduler for GPUs, so it stops where it got none."""
    if not job_gpus(variant):
        return []
    return ["--gpu", *(["--allow-cpu-fallback"] if config["train"]["allow_cpu_fallback"] else [])]


def training_gpus(wildcards):
    return job_gpus(wildcards.variant, VARIANTS[wildcards.variant].devices)


def training_cpus(wildcards):
    """train.cpus_per_device for each device, so every process of a DDP run is fed as one alone."""
    return VARIANTS[wildcards.variant].devices * config["train"]["cpus_per_device"]


def training_mem_mb(wildcards):
    return VARIANTS[wildcards.variant].devices * config["train"]["mem_mb_per_device"]


TRAINING_MINUTES = training_minutes(*RUN_MINUTES)


def mode_options(wildcards):
    """`--mode` (and `--stride`) of evaluation, from evaluate.mode and evaluate.stride; the
    selection images are scored so, without test-time augmentation: variants are ranked on the
    plain score."""
    stride = config["evaluate"]["stride"]
    options = ["--mode", config["evaluate"]["mode"]]
    if config["evaluate"]["mode"] == "slide" and stride:
        options += [
            "--stride",
            ",".join(map(str, stride)) if isinstance(stride, list) else str(stride),
        ]
    return options


def inference_options(wildcards):
    """`mode_options` and evaluate.tta: how evaluation scores; prediction passes the same, so it
    infers as the report scored."""
    return mode_options(wildcards) + ["--tta", *config["evaluate"]["tta"]]


def evaluations_of_run(wildcards):
    return expand(
        "results/eval/{variant}/seed-{seed}/{split}/metrics.json",
        variant=wildcards.variant,
        seed=wildcards.seed,
        split=EVAL_SPLITS,
    )


def split_manifest(name):
    return f"results/masks/{name}/manifest.csv"


def packed_inputs(*names):
    """The packed parts of these splits, where the config packs them (masks.pack)."""
    return [f"results/masks/{name}/packed" for name in names] if config["masks"]["pack"] else []


def read_options(stage):
    """`cocoseg train`/`evaluate` flags: the packed parts (masks.pack), copied to the node first
    where `stage` (train.stage or evaluate.stage) is local."""
    if not config["masks"]["pack"]:
        return []
    if stage["stage"] == "none":
        return ["--packed"]
    return [
        "--packed",
        "--stage",
        "local",
        *(["--stage-dir", stage["stage_dir"]] if stage["stage_dir"] else []),
    ]


def selection_manifest():
    """The manifest of the split whose images choose each run's epoch (and the report's winner)."""
    return split_manifest(TRAIN_SPLIT if SELECTION == "holdout" else SELECTION)


def selection_inputs():
    """The manifest of the split that chooses the best epoch, unless the holdout does."""
    return [] if SELECTION == "holdout" else [split_manifest(SELECTION)]


def results_root(wildcards, input):
    """`results/` of a rule's per-run inputs (`per_image`: results/eval/<variant>/seed-<n>/<split>/per_image.npz)."""
    return Path(input.per_image[0]).parents[4].as_posix()


def run_outputs(pattern, **wildcards):
    """`pattern` for every variant and seed (and any other wildcard given)."""
    return expand(pattern, variant=VARIANTS, seed=SEEDS, **wildcards)


def chooses_by_report(variant, seed):
    return variant == BEST or str(seed) == BEST


def chosen_run_inputs(variant, seed):
    """A job's model: the run named, or best.json and every model when the report chooses."""
    if chooses_by_report(variant, seed):
        return {
            "best": "results/report/best.json",
            "models": run_outputs("results/models/{variant}/seed-{seed}/model.pt"),
        }
    return {"model": f"results/models/{variant}/seed-{seed}/model.pt"}


def chosen_run_flags(variant, seed, input):
    """`cocoseg predict` / `export` flags naming the model of `chosen_run_inputs`."""
    if chooses_by_report(variant, seed):
        return ["--best", input.best, "--variant", variant, "--seed", str(seed)]
    return ["--model", input.model]


def prediction_shards(wildcards):
    return expand(
        "results/predict_shards/{folder}/{shard}",
        folder=wildcards.folder,
        shard=range(PREDICT["shards"]),
    )


def final_targets():
    """Outputs only a run of this config makes (the committed demo REPORT.md alone never satisfies it)."""
    return [
        *run_outputs("results/eval/{variant}/seed-{seed}/{split}/metrics.json", split=EVAL_SPLITS),
        "REPORT.md",
        f"results/report/plots/{TOP_TWO_PLOT}",
        *expand("results/predict/{folder}", folder=PREDICT["folders"]),
        *expand("results/export/best/{format}", format=config["export"]["formats"]),
    ]
