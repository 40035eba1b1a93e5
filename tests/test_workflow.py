"""The Snakemake workflow itself: lint, config validation, and the data stage on the demo config."""

import csv
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, mixed_image_folder, save_image
from PIL import Image

pytestmark = pytest.mark.slow  # each test runs snakemake: outside the fast path (-m "not slow")

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
TEST_CONFIG = REPO / ".test" / "config" / "config.yaml"
VARIANTS = {"unet-resnet18-64x96": ("Unet", "ce"), "unet-resnet18-64x96-dice": ("Unet", "dice"),
            "fpn-resnet18-64x96": ("FPN", "ce"), "fpn-resnet18-64x96-dice": ("FPN", "dice")}  # of TEST_CONFIG
VARIANT = "unet-resnet18-64x96"  # its first
ONE_VARIANT = "model:\n  architectures: [Unet]\n  grid: {loss: [ce]}\n"  # narrows TEST_CONFIG to VARIANT


def workflow_copy(tmp_path: Path, *extra: str) -> Path:
    for name in ("Snakefile", "config", "workflow", "envs", "profiles", *extra):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    return tmp_path


def snakemake(workdir: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([*SNAKEMAKE, "--cores", "2", *args], cwd=workdir, capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_lint_is_clean(tmp_path):
    result = snakemake(workflow_copy(tmp_path), "--lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_invalid_config_is_refused_with_the_key(tmp_path):
    workdir = workflow_copy(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(TEST_CONFIG.read_text() + "masks:\n  png_compress_level: 12\n")
    result = snakemake(workdir, "-n", "--configfile", str(bad))
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "png_compress_level" in message and "12" in message


def predict_block(tmp_path: Path, **settings) -> str:
    """An extra config file with a predict block, as --configfile takes it; one path, so the report,
    which names its config files, stays done when only prediction settings change."""
    path = tmp_path / "predict.yaml"
    path.write_text(json.dumps({"predict": {"folders": {"photos": "photos"}, **settings}}))
    return str(path)


def prediction_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".snakemake_timestamp"}


def test_test_config_runs_end_to_end_and_masks_match_the_cli(tmp_path):
    workdir = workflow_copy(tmp_path)
    expected_faults = mixed_image_folder(workdir / "photos")
    result = snakemake(workdir, "--configfile", str(TEST_CONFIG), predict_block(tmp_path, shards=3))
    assert result.returncode == 0, result.stderr[-3000:]
    for split, count in (("train", 24), ("val", 9)):
        out = workdir / "results" / "masks" / split
        assert len(list((out / "masks").glob("*.png"))) == count
        assert not (out / "shards").exists() and not (out / "index").exists()  # temp() removed
        assert (workdir / "results" / "logs" / "masks" / split / "gather.log").read_text().strip()

        cli_out = tmp_path / f"cli-{split}"
        holdout = ["--holdout-fraction", "0.15"] if split == "train" else []  # the default selection
        subprocess.run([sys.executable, "-m", "cocoseg", "masks",
                        "--annotations", str(workdir / "results" / "demo" / "annotations" / f"{split}.json"),
                        "--images", str(workdir / "results" / "demo" / "images" / split),
                        "--output", str(cli_out), *holdout], check=True, capture_output=True)
        for name in ("manifest.csv", "labels.csv"):
            assert (out / name).read_bytes() == (cli_out / name).read_bytes()
        for mask in (cli_out / "masks").iterdir():
            assert (out / "masks" / mask.name).read_bytes() == mask.read_bytes()
    train_log = (workdir / "results" / "logs" / "masks" / "train" / "shard-2.log").read_text()
    assert "train shard 3/3: 8 images" in train_log

    held_out = [row for row in csv.DictReader(open(workdir / "results" / "masks" / "train" / "manifest.csv"))
                if row["holdout"] == "1"]
    assert len(held_out) == 4  # 15% of 24, rounded up
    seed = 0
    for variant, (architecture, loss) in VARIANTS.items():
        run = f"{variant}/seed-{seed}"
        summary = json.loads((workdir / "results" / "models" / run / "summary.json").read_text())
        assert summary["epochs"] == 1 and summary["train_images"] == 20 and summary["seed"] == seed
        assert summary["selection"] == {"split": "train", "subset": "holdout", "images": 4}
        assert not list((workdir / "results" / "checkpoints" / run).glob("*.ckpt"))  # model.pt holds the weights
        model_mb = (workdir / "results" / "models" / run / "model.pt").stat().st_size / 2**20
        assert summary["disk_mb"] == {"model": model_mb, "checkpoints": 0}
        metrics = json.loads((workdir / "results" / "eval" / run / "val" / "metrics.json").read_text())
        assert metrics["images"] == 9 and metrics["variant"] == variant and metrics["seed"] == seed
        assert metrics["image_size"] == [64, 96] and summary["config"]["architecture"] == architecture
        assert summary["config"]["loss"] == loss
        log = (workdir / "results" / "logs" / "train" / variant / f"seed-{seed}.log").read_text()
        assert "\r" not in log and "Tip:" not in log  # a job log a person can tail
        assert [line.split(":")[0] for line in log.splitlines() if line.startswith("epoch ")] == ["epoch 1/1 done"]
        assert len(list((workdir / "results" / "eval" / run / "val" / "samples").glob("*.png"))) == 2
    per_seed = list(csv.DictReader(open(workdir / "results" / "report" / "metrics_per_seed.csv")))
    assert sorted((row["variant"], row["seed"]) for row in per_seed) == sorted((v, "0") for v in VARIANTS)

    mean_miou = {variant: json.loads((workdir / "results" / "eval" / variant / "seed-0" / "val" /
                                      "metrics.json").read_text())["miou"] for variant in VARIANTS}
    report = (workdir / "REPORT.md").read_text()
    assert f"the best variant is **{max(mean_miou, key=mean_miou.get)}**" in report
    effects = list(csv.DictReader(open(workdir / "results" / "report" / "main_effects.csv")))
    assert {row["setting"] for row in effects} == {"architecture", "loss"}
    unet = next(row for row in effects if row["value"] == "Unet")
    assert float(unet["miou_mean"]) == pytest.approx(np.mean([mean_miou[v] for v in VARIANTS if v.startswith("unet")]))
    pairs = list(csv.DictReader(open(workdir / "results" / "report" / "interactions.csv")))
    assert len(pairs) == 4 and {(row["setting_a"], row["setting_b"]) for row in pairs} == {("architecture", "loss")}
    assert "What moves mIoU most on val" in report
    shown = (workdir / "results" / "logs" / "top_two_differ.log").read_text().strip().split("disagree most: ")[1]
    differing = list(csv.DictReader(open(workdir / "results" / "report" / "top_two_disagreements.csv")))
    assert shown.split(", ") == [row["image"] for row in differing] and len(differing) == 5
    panel = Image.open(workdir / "results" / "report" / "plots" / "top_two_differ.png")
    assert panel.height == 28 + 5 * (28 + 180)  # a title, then per image a line of text and a row of tiles
    best = json.loads((workdir / "results" / "report" / "best.json").read_text())
    assert best["variant"] == max(mean_miou, key=mean_miou.get)
    exported = json.loads((workdir / "results" / "export" / "best" / "onnx" / "export.json").read_text())
    assert (exported["variant"], exported["seed"]) == (best["variant"], best["seed"])
    assert exported["check"]["argmax_agreement"] >= 0.999 and [b[0] for b in exported["check"]["batches"]] == [1] * 4 + [2]
    check_predictions(workdir, tmp_path, best, expected_faults)
    assert (workdir / "results" / "report" / "plots" / "training_curves.png").stat().st_size > 2000
    packed = snakemake(workdir, "--configfile", str(TEST_CONFIG), predict_block(tmp_path), "--report", "report.zip")
    assert packed.returncode == 0, packed.stderr[-3000:]
    with zipfile.ZipFile(workdir / "report.zip") as archive:  # the catalogue's `snakemake --report report.zip`
        names = archive.namelist()
    assert any(name.endswith("report.html") for name in names)
    assert any(name.endswith("metrics.csv") for name in names) and any(name.endswith("speed_accuracy.png") for name in names)


def check_predictions(workdir: Path, tmp_path: Path, best: dict, expected_faults: dict[str, str]) -> None:
    """predict.variant best with 3 shards (already run); then a named variant with 2 shards, whose
    folder must equal, byte for byte, the command's on the same model in one run."""
    predicted = workdir / "results" / "predict" / "photos"
    info = json.loads((predicted / "prediction.json").read_text())
    assert (info["variant"], info["seed"]) == (best["variant"], best["seed"])
    rows = {row["file"]: row for row in csv.DictReader(open(predicted / "manifest.csv"))}
    assert {name: row["status"] for name, row in rows.items()} == \
        {name: "skipped" if fault else "ok" for name, fault in expected_faults.items()}
    assert len(list((workdir / "results" / "logs" / "predict" / "photos").glob("shard-*.log"))) == 3
    assert len(list((predicted / "overlays").rglob("*.png"))) == 6

    other = next(variant for variant in VARIANTS if variant != best["variant"])
    result = snakemake(workdir, "--configfile", str(TEST_CONFIG),
                       predict_block(tmp_path, shards=2, variant=other, seed=0, overlays=False))
    assert result.returncode == 0, result.stderr[-3000:]
    model = f"results/models/{other}/seed-0/model.pt"
    subprocess.run([sys.executable, "-m", "cocoseg", "predict", "--model", model, "--images", "photos",
                    "--output", str(tmp_path / "cli"), "--no-overlays"], check=True, capture_output=True, cwd=workdir)
    files = prediction_files(predicted)
    assert json.loads(files["prediction.json"])["variant"] == other and "overlays" not in str(list(files))
    assert files == prediction_files(tmp_path / "cli") and len([f for f in files if f.startswith("masks/")]) == 6


def test_a_missing_path_in_the_config_stops_before_any_job(tmp_path):
    workdir = workflow_copy(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(TEST_CONFIG.read_text().replace("images: results/demo/images/train", "images: /nowhere/train2017"))
    result = snakemake(workdir, "--configfile", str(bad))
    assert result.returncode != 0
    assert "config splits.train.images: /nowhere/train2017 does not exist" in result.stderr
    assert not (workdir / "results").exists()


def test_committed_example_outputs_never_satisfy_another_config(tmp_path):
    workdir = workflow_copy(tmp_path)
    shutil.copy(REPO / "REPORT.md", workdir / "REPORT.md")
    shutil.copytree(REPO / "results" / "report", workdir / "results" / "report")
    result = snakemake(workdir, "-n", "--configfile", str(TEST_CONFIG))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Nothing to be done" not in result.stdout + result.stderr
    assert "train_variant" in result.stdout and "report" in result.stdout


def test_a_plain_rerun_recovers_from_a_killed_run(tmp_path):
    """Killed once a training job has saved a checkpoint: the rerun resumes that run, not restarts it."""
    workdir = workflow_copy(tmp_path)
    longer = tmp_path / "longer.yaml"
    longer.write_text("train:\n  epochs: 3\n  seeds: [0]\n" + ONE_VARIANT)
    trained = f"results/models/{VARIANT}/seed-0/summary.json"  # the run ends there: what is resumed is training
    command = [trained, "--configfile", str(TEST_CONFIG), str(longer)]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen([*SNAKEMAKE, "--cores", "2", *command], cwd=workdir,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoint = workdir / "results" / "checkpoints" / VARIANT / "seed-0" / "last.ckpt"
    deadline = time.time() + 240
    while not checkpoint.exists() and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the whole run: Snakemake and its jobs
    process.wait()
    assert checkpoint.exists() and list((workdir / ".snakemake" / "locks").iterdir())  # what a crash leaves
    result = snakemake(workdir, *command)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((workdir / "results" / "models" / VARIANT / "seed-0" / "summary.json").read_text())
    assert 1 <= summary["resumed_from_epoch"] < 3 and summary["epochs"] == 3
    assert [row["epoch"] for row in summary["history"]] == [1, 2, 3]
    assert not (workdir / ".snakemake" / "locks").exists() or not list((workdir / ".snakemake" / "locks").iterdir())


def test_the_workflow_runs_from_its_source_tree_without_the_package_installed(tmp_path):
    """As under --sdm conda: an environment with the third-party packages only."""
    site = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    venv.create(tmp_path / "env", with_pip=False)
    env_site = next((tmp_path / "env" / "lib").glob("python*/site-packages"))
    (env_site / "third_party.pth").write_text(site + "\n")  # a plain path: the package's own .pth is not read
    python = str(tmp_path / "env" / "bin" / "python")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PATH"] = f"{tmp_path / 'env' / 'bin'}{os.pathsep}{env['PATH']}"
    probe = subprocess.run([python, "-c", "import snakemake, torch; import cocoseg"], capture_output=True, text=True,
                           env=env, cwd=tmp_path)
    assert "No module named 'cocoseg'" in probe.stderr
    (tmp_path / "wf").mkdir()
    workdir = workflow_copy(tmp_path / "wf", "src")
    (tmp_path / "one.yaml").write_text(ONE_VARIANT)
    result = subprocess.run([python, "-m", "snakemake", "--cores", "2", "REPORT.md", "--configfile", str(TEST_CONFIG),
                             str(tmp_path / "one.yaml")],
                            cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (workdir / "REPORT.md").exists()


@pytest.mark.parametrize("extra, message", [
    ("model:\n  encoders: [resnet1800]\n",
     "config model.encoders: 'resnet1800' is not an encoder segmentation_models_pytorch knows"),
    ("model:\n  architectures: [DeepLabV9]\n", "config model.architecture(s): 'DeepLabV9' is not one of"),
    ("model:\n  architectures: [Unet, DPT]\n",
     "config model.architecture(s) and model.encoders: DPT does not take resnet18 (Only Timm encoders"),
    ("model:\n  grid: {lr: [0.1, fast]}\n", "config model.grid.lr: 'fast' is not of the kind lr takes (float)"),
    ("model:\n  encoder_weights: instagram\n",
     "config model.encoder_weights: 'instagram' is not available for resnet18"),
    ("model:\n  overrides: {unet-resnet18-64x96: {lrr: 0.1}}\n",
     "model.overrides.unet-resnet18-64x96: unknown key(s) lrr"),
    ("model:\n  overrides: {unet-resnet50-64x96: {lr: 0.1}}\n",
     "model.overrides names 'unet-resnet50-64x96', which is not a variant"),
    ("model:\n  image_sizes: [0]\n", "config model.image_sizes: 0: image size (0, 0): give one side"),
    ("model:\n  architectures: [FPN]\n  image_sizes: [[64, 80]]\n",
     "config model.image_sizes: 64x80: each side must be a multiple of 32 for FPN with resnet18"),
    ("model:\n  architectures: [DeepLabV3Plus]\n  image_sizes: [[64, 72]]\n",
     "config model.image_sizes: 64x72: each side must be a multiple of 16 for DeepLabV3Plus with resnet18"),
    ("predict:\n  variant: unet-resnet50-64x96\n",
     "config predict.variant: 'unet-resnet50-64x96' is not best or a variant of this config (unet-resnet18-64x96,"),
    ("predict:\n  folders: {photos: /nowhere/photos}\n", "config predict.folders.photos: /nowhere/photos does not exist"),
    ("time_limit_minutes: 180\n", "config time_limit_minutes: 180 leaves training 0 minutes after evaluation's 120"),
    ("splits:\n  val: {panoptic: {annotations: p.json, masks: p}}\n",
     "config splits.val: both annotations and panoptic are set (a --configfile is merged into config/config.yaml"),
    ("splits:\n  val: {annotations: null}\n", "config splits.val: give annotations (COCO JSON files) or panoptic"),
    ("masks:\n  unlabeled: nothing\n", "'nothing' is not one of ['auto', 'background', 'ignore']"),
])
def test_config_mistakes_stop_the_dry_run_with_the_key(tmp_path, extra, message):
    workdir = workflow_copy(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(extra)
    result = snakemake(workdir, "-n", "--configfile", str(TEST_CONFIG), str(bad))
    assert result.returncode != 0 and message in result.stdout + result.stderr, result.stdout + result.stderr


def schema_leaves(node: dict, prefix: str = ""):
    """Every settable key of the config schema, as config/README.md spells it (`splits.<name>.shards`)."""
    for name, sub in (node.get("properties") or {}).items():
        nested = bool(sub.get("properties")) or isinstance(sub.get("additionalProperties"), dict) and \
            bool(sub["additionalProperties"].get("properties"))
        if not nested:
            yield prefix + name
        yield from schema_leaves(sub, f"{prefix}{name}.")
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and extra.get("properties"):
        yield from schema_leaves(extra, f"{prefix}<name>.")


def test_every_config_key_is_documented():
    import yaml

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    documented = (REPO / "config" / "README.md").read_text()
    leaves = list(schema_leaves(schema))
    assert {"predict.folders", "predict.shards", "splits.<name>.shards", "train.holdout.seed"} <= set(leaves)
    assert [key for key in leaves if f"`{key}`" not in documented] == []


def test_the_workflow_runs_as_a_module_of_another(tmp_path):
    """`module cocoseg: snakefile: <checkout>/workflow/Snakefile` with its config passed in, its rules
    used under a prefix: the mask stage runs inside the host's folder, whole DAG planned."""
    host = tmp_path / "host"
    host.mkdir()
    config = yaml.safe_load(TEST_CONFIG.read_text())
    config["model"].update(yaml.safe_load(ONE_VARIANT)["model"])
    (host / "config.yaml").write_text(yaml.safe_dump({"cocoseg": config}))
    (host / "Snakefile").write_text(f"""configfile: "config.yaml"


module cocoseg:
    snakefile:
        "{REPO / 'workflow' / 'Snakefile'}"
    config:
        config["cocoseg"]


use rule * from cocoseg as cocoseg_*


rule all:
    input:
        rules.cocoseg_all.input,
    default_target: True
""")
    planned = snakemake(host, "-n")
    assert planned.returncode == 0, planned.stderr[-3000:]
    for rule in ("cocoseg_train_variant", "cocoseg_evaluate_variant", "cocoseg_report", "cocoseg_export_model"):
        assert re.search(rf"^{rule}\s+1$", planned.stdout, flags=re.M), planned.stdout
    result = snakemake(host, "results/masks/val/manifest.csv")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader(open(host / "results" / "masks" / "val" / "manifest.csv")))
    assert len(rows) == config["demo"]["splits"]["val"] and all(row["status"] == "ok" for row in rows)


def test_prediction_asks_for_a_gpu_where_training_does_and_any_variant_exports(tmp_path):
    """One dry run: predict_shard jobs with `train.gpu` ask for a GPU and pass --gpu; a variant other
    than the winner is exported under its own name with its best seed."""
    workdir = workflow_copy(tmp_path)
    (workdir / "photos").mkdir()
    extra = tmp_path / "gpu.yaml"
    extra.write_text(f"train: {{gpu: true}}\npredict: {{folders: {{photos: photos}}, variant: {VARIANT}, seed: 0, "
                     f"shards: 2}}\n")
    other = "fpn-resnet18-64x96"
    result = snakemake(workdir, "-n", "-p", "results/predict/photos", f"results/export/{other}/torchscript",
                       "--configfile", str(TEST_CONFIG), str(extra))
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = result.stdout.split("rule predict_shard:")[1:]
    assert len(jobs) == 2, result.stdout
    for job in jobs:
        job = job.split("\n\n")[0]
        assert "gpu=1" in job and " --gpu" in job and f"results/models/{VARIANT}/seed-0/model.pt" in job
    assert f"--best results/report/best.json --variant {other} --seed best --format torchscript " \
        f"--output results/export/{other}/torchscript" in result.stdout, result.stdout[-3000:]


def job_blocks(stdout: str, rule: str) -> list[str]:
    """The dry run's printed jobs of `rule`, each its block of wildcards, resources and command."""
    return [block.split("\n\n")[0] for block in stdout.split(f"rule {rule}:")[1:]]


def test_each_job_asks_for_gpus_from_the_variant_it_runs(tmp_path):
    """One variant on two GPUs, the others on the CPU: its training asks for two, its evaluation for
    one, the CPU variants' jobs and a prediction with a CPU variant for none."""
    workdir = workflow_copy(tmp_path)
    (workdir / "photos").mkdir()
    other = "fpn-resnet18-64x96"
    extra = tmp_path / "gpu.yaml"
    extra.write_text(f"model: {{overrides: {{{VARIANT}: {{gpu: true, devices: 2}}}}}}\n"
                     f"predict: {{folders: {{photos: photos}}, variant: {other}, seed: 0}}\n")
    result = snakemake(workdir, "-n", "-p", "--configfile", str(TEST_CONFIG), str(extra))
    assert result.returncode == 0, result.stderr[-3000:]

    def gpus(rule: str, variant: str | None = None) -> set[str]:
        blocks = [b for b in job_blocks(result.stdout, rule) if variant is None or f"variant={variant}," in b]
        assert blocks, f"no {rule} job for {variant}"
        return {m[1] if (m := re.search(r"\bgpu=(\d+)", b)) else "0" for b in blocks}

    assert gpus("train_variant", VARIANT) == {"2"} and gpus("train_variant", other) == {"0"}
    assert gpus("evaluate_variant", VARIANT) == {"1"} and gpus("evaluate_variant", other) == {"0"}
    assert gpus("predict_shard") == {"0"}


def test_a_setting_added_to_the_variant_reaches_the_training_job_without_another_change(tmp_path):
    """A copy of the package whose Variant gains one field, and nothing else; the config sets it for
    one variant: the workflow's training command carries the value, and `cocoseg train` reads it
    back into the variant it trains."""
    src = tmp_path / "src"
    shutil.copytree(REPO / "src" / "cocoseg", src / "cocoseg")
    variants = src / "cocoseg" / "training" / "variants.py"
    anchor = "    name: str = setting("
    assert anchor in variants.read_text()
    variants.write_text(variants.read_text().replace(
        anchor, '    probe_setting: float = setting(0.25, "a setting this test adds")\n' + anchor))
    (tmp_path / "work").mkdir()
    workdir = workflow_copy(tmp_path / "work")
    extra = tmp_path / "probe.yaml"
    extra.write_text(f"model: {{overrides: {{{VARIANT}: {{probe_setting: 0.5}}}}}}\n")
    env = {**os.environ, "PYTHONPATH": str(src)}
    dry = subprocess.run([*SNAKEMAKE, "--cores", "2", "-n", "-p", f"results/models/{VARIANT}/seed-0/model.pt",
                          "--configfile", str(TEST_CONFIG), str(extra)], cwd=workdir, capture_output=True,
                         text=True, timeout=300, env=env)
    assert dry.returncode == 0, dry.stderr[-3000:]
    command = next(line for line in dry.stdout.splitlines() if "cocoseg train" in line)
    words = shlex.split(command.split("exec ", 1)[1].split(" > ")[0])
    probe = ("import json, sys\nfrom cocoseg import cli\nfrom cocoseg.training import train\n"
             "train.train = lambda variant, *a, **k: print(json.dumps(variant.to_dict()))\n"
             "cli.main(sys.argv[1:])\n")
    trained = subprocess.run([sys.executable, "-c", probe, *words[3:]], cwd=workdir, capture_output=True, text=True,
                             timeout=120, env=env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    settings = json.loads(trained.stdout.strip().splitlines()[-1])
    assert settings["probe_setting"] == 0.5 and settings["name"] == VARIANT


STUFF_CONFIG = REPO / ".test" / "config" / "stuff.yaml"


def test_a_data_set_that_labels_every_pixel_trains_and_reports_without_background(tmp_path):
    """Things and stuff from two files per split with `masks.unlabeled: ignore`: the classes are the
    data set's own (no background row, labels from 0), unlabelled pixels count nowhere, and the
    mIoU is the mean IoU of those classes as the confusion matrix gives it."""
    workdir = workflow_copy(tmp_path, ".test")
    result = snakemake(workdir, "REPORT.md", "--configfile", str(STUFF_CONFIG), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    val = workdir / "results" / "masks" / "val"
    labels = list(csv.DictReader(open(val / "labels.csv")))
    assert [(row["label"], row["name"]) for row in labels] == [
        (str(i), name) for i, name in enumerate(["disc", "square", "triangle", "twin-bars", "star", "sky", "ground",
                                                 "wall"])]
    values = set()
    for mask in (val / "masks").glob("*.png"):
        values |= set(np.unique(np.asarray(Image.open(mask))).tolist())
    assert {5, 6, 255} <= values <= set(range(8)) | {255}  # sky, ground and the unlabelled band
    (metrics_file,) = (workdir / "results" / "eval").rglob("val/metrics.json")  # one variant, one seed
    confusion = np.loadtxt(metrics_file.parent / "confusion.csv", delimiter=",", skiprows=1)[:, 1:]
    assert confusion.shape == (8, 8)
    with np.errstate(invalid="ignore"):
        iou = np.diag(confusion) / (confusion.sum(0) + confusion.sum(1) - np.diag(confusion))
    assert json.loads(metrics_file.read_text())["miou"] == pytest.approx(np.nanmean(iou), abs=1e-6)
    per_class = list(csv.DictReader(open(metrics_file.parent / "per_class.csv")))
    assert [row["name"] for row in per_class] == [row["name"] for row in labels]
    report = (workdir / "REPORT.md").read_text()
    assert "| background" not in report and "| sky" in report
    assert "of the 8 labels (no background class" in " ".join(report.split())


def test_a_panoptic_split_runs_through_the_mask_jobs_as_the_cli_converts_it(tmp_path):
    """The panoptic fixture (real COCO annotations) as a split given by a --configfile: the index
    and shard jobs write what `cocoseg masks --panoptic-masks` writes, byte for byte."""
    fixture = REPO / "tests" / "data" / "coco-panoptic"
    (tmp_path / "work").mkdir()
    workdir = workflow_copy(tmp_path / "work")
    images = tmp_path / "photos"
    for image in json.loads((fixture / "panoptic.json").read_text())["images"]:
        save_image(images / image["file_name"], image["width"], image["height"])
    split = {"annotations": None, "panoptic": {"annotations": str(fixture / "panoptic.json"),
                                               "masks": str(fixture / "panoptic")},
             "images": str(images), "shards": 2}
    config = tmp_path / "panoptic.yaml"
    config.write_text(yaml.safe_dump({"splits": {"train": split, "val": split},
                                      "masks": {"unlabeled": "ignore"}}))
    result = snakemake(workdir, "results/masks/val/manifest.csv", "--configfile", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    subprocess.run([sys.executable, "-m", "cocoseg", "masks", "--annotations", str(fixture / "panoptic.json"),
                    "--panoptic-masks", str(fixture / "panoptic"), "--images", str(images), "--output",
                    str(tmp_path / "cli"), "--unlabeled", "ignore"], check=True, capture_output=True)
    out = workdir / "results" / "masks" / "val"
    for name in ("manifest.csv", "labels.csv", "masks/000000142238.png", "masks/000000439180.png"):
        assert (out / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name
    assert len(list(csv.DictReader(open(out / "labels.csv")))) == 133


def test_packed_splits_are_staged_for_training_and_evaluation_jobs(tmp_path):
    """masks.pack with stage: local: the pack jobs run, training and evaluation read the staged
    parts (their logs and outputs say so, with the staging time), and leave the node's folder empty."""
    (tmp_path / "work").mkdir()
    workdir = workflow_copy(tmp_path / "work")
    node = tmp_path / "node-local"
    extra = tmp_path / "packed.yaml"
    extra.write_text(ONE_VARIANT + f"masks:\n  pack: true\n  pack_part_mb: 0.05\n"
                     f"train:\n  stage: local\n  stage_dir: {node}\nevaluate:\n  stage: local\n  stage_dir: {node}\n")
    target = f"results/eval/{VARIANT}/seed-0/val/metrics.json"
    result = snakemake(workdir, target, "--configfile", str(TEST_CONFIG), str(extra))
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list((workdir / "results" / "masks" / "train" / "packed").glob("part-*.tar"))) >= 2
    log = (workdir / "results" / "logs" / "train" / VARIANT / "seed-0.log").read_text()
    assert re.search(rf"staged results/masks/train/packed \(\d+ MB\) to {re.escape(str(node))}/cocoseg-train-\S+ "
                     r"in [\d.]+ s", log)
    summary = json.loads((workdir / "results" / "models" / VARIANT / "seed-0" / "summary.json").read_text())
    assert summary["data"]["read"] == "packed" and summary["data"]["staging"]["dir"] == str(node)
    metrics = json.loads((workdir / target).read_text())
    assert metrics["data"]["read"] == "packed" and metrics["data"]["staging"]["seconds"] > 0
    assert node.is_dir() and not any(node.iterdir())
