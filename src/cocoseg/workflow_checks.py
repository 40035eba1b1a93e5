"""What the workflow does before any job: check config paths, clear locks left by a crash, and
export the source tree the jobs run from.

Imported by the Snakefile, so kept free of torch and other heavy imports.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

from cocoseg.masks.label_map import resolve_unlabeled
from cocoseg.shared.errors import InputError, first_line
from cocoseg.shared.files import read_json
from cocoseg.training.variants import is_weights_file

LOCK_OWNER = "cocoseg-lock-owner.json"  # in .snakemake/: which process holds the locks


def split_problems(splits: dict) -> list[str]:
    """One line per split that has neither annotations nor panoptic, or both. Both is what a
    --configfile gives when it makes a split of config/config.yaml panoptic: Snakemake merges the
    two, so the split keeps the default's annotations."""
    problems = []
    for name, split in splits.items():
        given = [key for key in ("annotations", "panoptic") if split.get(key) is not None]
        if not given:
            problems.append(f"config splits.{name}: give annotations (COCO JSON files) or panoptic")
        elif len(given) == 2:
            problems.append(f"config splits.{name}: both annotations and panoptic are set (a --configfile is merged "
                            "into config/config.yaml, whose splits have annotations): set annotations: null here")
    return problems


def annotation_paths(split: dict) -> list[str]:
    """A split's annotation files: its instances-format files, or its panoptic JSON."""
    if split.get("panoptic") is not None:
        return [split["panoptic"]["annotations"]]
    files = split["annotations"]
    return [files] if isinstance(files, str) else list(files)


def unlabeled_choice(config: dict) -> str:
    """masks.unlabeled for every split at once (one label map for all): "auto" is ignore where any
    split has several annotation files or is panoptic."""
    labels_every_pixel = any(split.get("panoptic") is not None or len(annotation_paths(split)) > 1
                             for split in config["splits"].values())
    return resolve_unlabeled(config["masks"]["unlabeled"], labels_every_pixel)


def missing_config_paths(config: dict, produced: set[str]) -> list[str]:
    """One line per path the config names (split files and folders, an encoder-weights file)
    that neither exists nor is made by a rule."""
    paths = {}
    for name, split in config["splits"].items():
        paths[f"splits.{name}.images"] = split["images"]
        if split.get("panoptic") is not None:
            paths |= {f"splits.{name}.panoptic.{key}": split["panoptic"][key] for key in ("annotations", "masks")}
        else:
            files = annotation_paths(split)
            paths |= {f"splits.{name}.annotations" + (f"[{i}]" if len(files) > 1 else ""): path
                      for i, path in enumerate(files)}
    weights = config["model"]["encoder_weights"]
    if is_weights_file(weights):
        paths["model.encoder_weights"] = weights
    paths |= {f"predict.folders.{name}": folder for name, folder in config["predict"]["folders"].items()}
    return [f"config {key}: {path} does not exist" for key, path in paths.items()
            if path not in produced and not os.path.exists(path)]


def predict_problems(predict: dict, variants: list[str], seeds: list[str], results: str = "results") -> list[str]:
    """One line per mistake of the predict block: a run the config does not train, a folder that
    holds the results folder (a rerun would predict its own outputs)."""
    problems = []
    if predict["variant"] != "best" and predict["variant"] not in variants:
        problems.append(f"config predict.variant: {predict['variant']!r} is not best or a variant of this config "
                        f"({', '.join(variants)})")
    if str(predict["seed"]) != "best" and str(predict["seed"]) not in seeds:
        problems.append(f"config predict.seed: {predict['seed']} is not best or one of train.seeds "
                        f"({', '.join(seeds)})")
    ours = Path(results).resolve()
    for name, folder in predict["folders"].items():
        if ours == Path(folder).resolve() or Path(folder).resolve() in ours.parents:
            problems.append(f"config predict.folders.{name}: {folder} holds {results}/, where predictions are written")
    return problems


MIN_TRAINING_MINUTES = 1


def training_minutes(time_limit: int, evaluation: int, selection: int) -> int:
    """Training's time in a run's group job: the partition's limit less what its evaluations and
    then the scoring of its selection images take, so that the group (Snakemake sums the runtimes
    of a group's consecutive jobs) never asks for more than the partition allows."""
    return time_limit - evaluation - selection


def time_limit_problem(time_limit: int, evaluation: int, selection: int) -> str | None:
    left = training_minutes(time_limit, evaluation, selection)
    if left >= MIN_TRAINING_MINUTES:
        return None
    return (f"config time_limit_minutes: {time_limit} leaves training {left} minutes after evaluation's {evaluation} "
            f"(evaluate.runtime_minutes) and the selection's {selection} (evaluate.selection_runtime_minutes); "
            f"training needs at least {MIN_TRAINING_MINUTES}")


def export_source_path(source: str) -> None:
    """Put the workflow's own src/ first on PYTHONPATH, which every job inherits."""
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))


def record_lock_owner(state_dir: Path) -> None:
    """Write which process holds Snakemake's locks, so a later run can tell that it died."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / LOCK_OWNER).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def clear_stale_locks(state_dir: Path) -> str | None:
    """Remove the locks of a run that was killed (same host, its process gone); say what was done.

    Locks of a live run, of a run on another host, or without a recorded owner are kept, so
    two runs never write the same files at once.
    """
    locks, owner_file = Path(state_dir) / "locks", Path(state_dir) / LOCK_OWNER
    if not locks.is_dir() or not any(locks.iterdir()) or not owner_file.is_file():
        return None
    try:
        owner = read_json(owner_file)
    except InputError:  # an owner record cut short: whose locks these are is unknown, so they stay
        return None
    if owner.get("host") != socket.gethostname() or _alive(int(owner.get("pid", 0))):
        return None
    shutil.rmtree(locks)
    owner_file.unlink()
    return f"removed the locks of a run that ended without cleaning up (process {owner['pid']})"


def _network_problems(variant) -> list[str]:
    """Whether the architecture takes the encoder, and the size, as SMP builds and checks them."""
    from cocoseg.training.network import size_problem

    try:
        problem = size_problem(variant.architecture, variant.encoder, variant.image_size)
    except Exception as e:  # SMP refuses the pair while building it
        return [f"config model.architecture(s) and model.encoders: {variant.architecture} does not take "
                f"{variant.encoder} ({first_line(e)})"]
    return [f"config model.image_sizes: {problem}"] if problem else []


def config_problems(variants: dict) -> list[str]:
    """One line per setting that would fail only inside a training job, found before any job runs.

    Imports torch and SMP when called: the Snakefile calls it once, in the main process.
    """
    import segmentation_models_pytorch as smp

    architectures = {name.lower() for name in smp.MODEL_ARCHITECTURES_MAPPING}
    encoders = smp.encoders.get_encoder_names()
    problems = []
    for name, v in variants.items():
        known_architecture = v.architecture.lower() in architectures
        if not known_architecture:
            problems.append(f"config model.architecture(s): {v.architecture!r} is not one of "
                            f"segmentation_models_pytorch's ({', '.join(sorted(smp.MODEL_ARCHITECTURES_MAPPING))})")
        if v.encoder not in encoders:
            problems.append(f"config model.encoders: {v.encoder!r} is not an encoder segmentation_models_pytorch "
                            f"knows (for example resnet18, resnet50, mobilenet_v2, efficientnet-b0)")
        else:
            if v.encoder_weights and not is_weights_file(v.encoder_weights):
                available = sorted(smp.encoders.encoders[v.encoder]["pretrained_settings"])
                if v.encoder_weights not in available:
                    problems.append(f"config model.encoder_weights: {v.encoder_weights!r} is not available for "
                                    f"{v.encoder} ({', '.join(available) or 'none'}; or give a file)")
            if known_architecture:
                problems += _network_problems(v)
        if v.gpu and v.accelerator == "cpu":
            problems.append(f"config for {name}: gpu: true asks for a GPU that accelerator: cpu would not use")
    return list(dict.fromkeys(problems))
