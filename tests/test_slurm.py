"""The workflow on a real single-node SLURM cluster, through `snakemake --profile profiles/slurm`.

Starts munged, slurmctld and slurmd when it can (root; apt-get installs them if missing) and
skips, saying why, when it cannot. Every job outside `localrules` must go through sbatch, ask
for what the profile and config say, and give the same results as a local run; a training job
cancelled mid-run must be resubmitted and resume from its last checkpoint.
"""

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from slurm_cluster import ClusterUnavailable, SlurmCluster
from test_workflow import ONE_VARIANT, TEST_CONFIG, VARIANT, snakemake, workflow_copy

pytestmark = pytest.mark.slow  # a real SLURM cluster: outside the fast path (-m "not slow")

RUN = f"{VARIANT}/seed-0"
RUN_GROUP = "run_evaluate_variant_score_selection_train_variant"  # a group job is named by its group and rules
# What the 2-CPU test node can hold, in place of the profile's sizes for real GPU nodes; the
# first status check after 2 s instead of 40 s. Everything else comes from profiles/slurm.
EPOCHS_PAST_THE_LIMIT = 120  # about 4 minutes of training on the test node: past the first warning, however fast


def node_fit(time_limit: int = 50, resources: tuple[str, ...] = ()) -> list[str]:
    return [
        "--slurm-init-seconds-before-status-checks", "2",
        "--set-threads", "evaluate_variant=2", "score_selection=2",
        "--set-resources", "evaluate_variant:mem_mb=2000", "score_selection:mem_mb=2000", "mask_shard:mem_mb=500",
        *resources,
        "--default-resources", "mem_mb=1000", "runtime=10",
        "--group-components", "masks=2",  # two one-CPU shards per submission on this 2-CPU node (the profile: 4)
        "--config", f"time_limit_minutes={time_limit}",  # the partition's limit: training gets it less 10 + 10
    ]

# Training's CPUs and memory per device, and the evaluations' minutes, come from the config.
NODE_FIT_CONFIG = {"train": {"cpus_per_device": 2, "mem_mb_per_device": 2000},
                   "evaluate": {"runtime_minutes": 10, "selection_runtime_minutes": 10}}
# Submissions, by rule or group: the index as a cluster job (masks.index_on_cluster), the four mask
# shards in one group job, each split's packing (masks.pack), training and its evaluation in
# another group (the profile's groups).
REMOTE_JOBS = {("rule", "index_split", "train"), ("rule", "index_split", "val"), ("group", "masks_mask_shard", ""),
               ("rule", "pack_split", "train"), ("rule", "pack_split", "val"),
               ("group", RUN_GROUP, ""), ("rule", "top_two_differ", ""), ("rule", "export_model", "best_onnx")}


def planned_jobs(output: str) -> dict[str, list[str]]:
    """rule -> the dry run's text of each of its jobs."""
    jobs: dict[str, list[str]] = {}
    for block in re.split(r"\n(?= *\[[^\]]+\]\n *(?:local)?rule )", output):  # group members are indented
        if rule := re.search(r"^ *(?:local)?rule (\w+):", block, flags=re.M):
            jobs.setdefault(rule[1], []).append(block)
    return jobs


def planned_resources(job: str) -> dict[str, str]:
    """A dry run's job text -> its threads and resources."""
    resources = dict(item.split("=", 1) for item in re.search(r"resources: (.*)", job)[1].split(", "))
    threads = re.search(r"threads: (\d+)", job)  # a one-thread job prints none
    return {**resources, "threads": threads[1] if threads else "1"}


def dry_run_with_profile(workdir: Path, *extra: str) -> dict[str, list[dict[str, str]]]:
    result = snakemake(workdir, "-n", "-p", "--profile", "profiles/slurm", "--configfile", str(TEST_CONFIG), *extra,
                       "--cores", "256")  # a dry run caps threads at --cores, which a cluster run does not
    assert result.returncode == 0, result.stderr[-3000:]
    return {rule: [planned_resources(job) for job in jobs] for rule, jobs in planned_jobs(result.stdout).items()}


def test_the_slurm_profile_gives_each_job_its_own_cpus_memory_and_time(tmp_path):
    """The profile's own sizes, which the live test overrides to fit its node: read from the
    profile, checked against what a dry run would submit, without SLURM."""
    profile = yaml.safe_load((workflow_copy(tmp_path) / "profiles" / "slurm" / "config.yaml").read_text())
    jobs = dry_run_with_profile(tmp_path)
    defaults = profile["default-resources"]
    for rule in ("mask_shard", "evaluate_variant", "score_selection"):
        assert jobs.get(rule), f"no {rule} job planned"
        resources = {**defaults, **profile["set-resources"].get(rule, {})}
        for job in jobs[rule]:
            assert job["mem_mb"] == str(resources["mem_mb"]), job
            assert job["threads"] == str(profile["set-threads"].get(rule, 1)), job
    assert profile["set-threads"] == {"evaluate_variant": 4, "score_selection": 4, "predict_shard": 4}
    for train, evaluation, selection in zip(jobs["train_variant"], jobs["evaluate_variant"], jobs["score_selection"]):
        assert (train["threads"], train["mem_mb"]) == ("8", "32000")  # one device's CPUs and memory
        # the run's group job: training, then its evaluation, then its selection images, within the partition's limit
        group_minutes = int(train["runtime"]) + int(evaluation["runtime"]) + int(selection["runtime"])
        assert group_minutes == profile["config"]["time_limit_minutes"] == 1440, (train, evaluation, selection)


def test_a_four_gpu_run_asks_for_four_times_the_cpus_and_memory_of_one(tmp_path):
    from cocoseg.shared.hardware import share_cpus

    workdir = workflow_copy(tmp_path)
    four = tmp_path / "four.yaml"
    four.write_text("train:\n  gpu: true\n  devices: 4\n")
    one = dry_run_with_profile(workdir)["train_variant"][0]
    many = dry_run_with_profile(workdir, str(four))["train_variant"][0]
    assert (many["gpu"], one["gpu"]) == ("4", "0")
    assert int(many["threads"]) == 4 * int(one["threads"]) and int(many["mem_mb"]) == 4 * int(one["mem_mb"])
    assert share_cpus(int(many["threads"]), 4, "gpu") == share_cpus(int(one["threads"]), 1, "gpu")


@pytest.fixture(scope="module")
def cluster(module_tmp):
    try:
        with SlurmCluster(module_tmp("slurm")) as running:
            yield running
    except ClusterUnavailable as why:
        pytest.skip(f"no SLURM cluster: {why}")


def gpu_config(path: Path, **train) -> Path:
    config = yaml.safe_load(TEST_CONFIG.read_text())
    # The jobs ask SLURM for a GPU (gres on the test node); one variant and one seed keep the test
    # short. The test node's GPU is a SLURM gres without CUDA behind it: the job must be allowed the CPU.
    config["model"].update(yaml.safe_load(ONE_VARIANT)["model"])
    config["train"].update(gpu=True, allow_cpu_fallback=True, seeds=[0], **train)
    config["masks"] = {"index_on_cluster": True, "pack": True}  # and each job stages the packed parts
    for section in ("train", "evaluate"):
        config.setdefault(section, {})["stage"] = "local"
    for section, values in NODE_FIT_CONFIG.items():
        config.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(config))
    return path


def slurm_snakemake(cluster, workdir: Path, config: Path, *extra: str, background: bool = False,
                    fit: list[str] | None = None):
    command = [sys.executable, "-m", "snakemake", "--profile", "profiles/slurm", "--configfile", str(config),
               *(fit or node_fit()), *extra]
    env = {**cluster.env, "PATH": f"{Path(sys.executable).parent}:{cluster.env['PATH']}"}
    if background:
        return subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=900)


def submitted(log: str) -> dict[tuple[str, str, str], list[str]]:
    """("rule" or "group", its name, wildcards) -> SLURM job ids, from the plugin's log paths and its
    'submitted with SLURM jobid' lines."""
    jobs: dict[tuple[str, str, str], list[str]] = {}
    for kind, name, wildcards, job_id in re.findall(r"slurm_logs/(rule|group)_([^/\s]+)/(?:(\S+)/)?(\d+)\.log", log):
        if f"SLURM jobid {job_id} " in log:
            jobs.setdefault((kind, name, wildcards), []).append(job_id)
    return {key: sorted(set(ids), key=int) for key, ids in jobs.items()}


def job_logs(workdir: Path) -> str:
    """The last lines of every job's log, for a failed run's message."""
    return "".join(f"\n--- {path.relative_to(workdir)}:\n" + "\n".join(path.read_text().splitlines()[-15:])
                   for folder in ("results/logs", ".snakemake/slurm_logs")
                   for path in sorted((workdir / folder).rglob("*.log")))


@pytest.fixture(scope="module")
def slurm_run(cluster, module_tmp):
    root = module_tmp("slurm-run")
    workdir = workflow_copy(root)
    config = gpu_config(root / "config.yaml")
    result = slurm_snakemake(cluster, workdir, config, "--verbose")  # verbose: the plugin logs each sbatch call
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:] + job_logs(workdir)
    return workdir, config, result.stdout + result.stderr


def test_every_remote_job_goes_through_sbatch_and_completes(cluster, slurm_run):
    _, _, log = slurm_run
    jobs = submitted(log)
    assert set(jobs) == REMOTE_JOBS
    for (_, name, _), ids in jobs.items():
        assert cluster.job(ids[-1])["JobState"] == "COMPLETED", name


def test_training_job_asks_for_gpu_cpus_memory_and_time(cluster, slurm_run):
    _, _, log = slurm_run
    job = cluster.job(submitted(log)[("group", RUN_GROUP, "")][-1])  # training, then its evaluation
    assert "cpu=2" in job["TRES"] and "mem=2000M" in job["TRES"]
    assert job["TresPerJob"] == "gres:gpu:1"
    assert job["TimeLimit"] == "00:50:00"  # the partition's limit: training's 30 minutes, evaluation's 10, selection's 10
    sbatch = re.search(rf"sbatch call: (sbatch .*group_{RUN_GROUP}.*)", log)[1]
    assert "--gpus=1" in sbatch and "--cpus-per-task=2" in sbatch and "--mem 2000" in sbatch and "-t 50" in sbatch
    workdir, _, _ = slurm_run
    first = (workdir / "results" / "logs" / "train" / VARIANT / "seed-0.log").read_text().splitlines()[0]
    assert first.startswith("warning: ") and "a GPU was asked for, but CUDA is not usable here" in first
    summary = json.loads((workdir / "results" / "models" / RUN / "summary.json").read_text())
    assert summary["gpu_requested"] is True and summary["accelerator"] == "cpu"


def test_results_equal_a_local_run(slurm_run, tmp_path):
    """The cluster's jobs read staged packed parts; the same config read from the split folders
    here gives the same masks and metrics."""
    workdir, config, _ = slurm_run
    log = (workdir / "results" / "logs" / "train" / VARIANT / "seed-0.log").read_text()
    assert re.search(r"staged results/masks/train/packed \(\d+ MB\) to \S+ in [\d.]+ s", log), log[-2000:]
    staged = json.loads((workdir / "results" / "eval" / RUN / "val" / "metrics.json").read_text())["data"]
    assert staged["read"] == "packed" and staged["staging"]["seconds"] > 0
    folders = yaml.safe_load(config.read_text())
    folders["masks"]["pack"] = False
    for section in ("train", "evaluate"):
        folders[section]["stage"] = "none"
    config = tmp_path / "folders.yaml"
    config.write_text(yaml.safe_dump(folders))
    local = workflow_copy(tmp_path)
    evaluation = f"results/eval/{RUN}/val"
    result = snakemake(local, f"{evaluation}/metrics.json", "--configfile", str(config))  # what is compared
    assert result.returncode == 0, result.stderr[-3000:]
    for split in ("train", "val"):
        for name in ("manifest.csv", "labels.csv"):
            assert (workdir / "results/masks" / split / name).read_bytes() == (local / "results/masks" / split / name).read_bytes()
        for mask in (local / "results/masks" / split / "masks").glob("*.png"):
            assert (workdir / "results/masks" / split / "masks" / mask.name).read_bytes() == mask.read_bytes()
    remote, here = (json.loads((d / evaluation / "metrics.json").read_text()) for d in (workdir, local))
    assert remote["miou"] == here["miou"] and remote["pixel_accuracy"] == here["pixel_accuracy"]
    assert (workdir / evaluation / "per_class.csv").read_bytes() == (local / evaluation / "per_class.csv").read_bytes()


def test_cancelled_training_job_is_resubmitted_and_resumes(cluster, slurm_run, tmp_path):
    workdir, _, _ = slurm_run
    shutil.rmtree(workdir / "results" / "checkpoints" / RUN)
    config = gpu_config(tmp_path / "longer.yaml", epochs=8)
    process = slurm_snakemake(cluster, workdir, config, background=True)
    last = workdir / "results" / "checkpoints" / RUN / "last.ckpt"
    deadline = time.time() + 400
    while not last.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    queue = subprocess.run(["squeue", "-h", "-o", "%i %k"], env=cluster.env, capture_output=True, text=True).stdout
    training = [line.split()[0] for line in queue.splitlines() if f"rule_{RUN_GROUP}" in line]
    assert training, f"no training job in the queue: {queue!r}"
    subprocess.run(["scancel", training[0]], env=cluster.env, check=True)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-4000:]
    assert cluster.job(training[0])["JobState"] == "CANCELLED"
    assert len(submitted(output)[("group", RUN_GROUP, "")]) == 2
    summary = json.loads((workdir / "results" / "models" / RUN / "summary.json").read_text())
    assert summary["epochs"] == 8 and 1 <= summary["resumed_from_epoch"] < 8
    assert [row["epoch"] for row in summary["history"]] == list(range(1, 9))
    assert (workdir / "REPORT.md").read_text().count(VARIANT) >= 3


def test_a_run_out_of_time_is_resubmitted_and_continues_from_its_step(cluster, slurm_run, tmp_path):
    """A 3-minute limit, SLURM's warning (SIGTERM) 60 s before it: training saves at the end of its
    batch and exits, the retry resubmits the run, which continues from that step, and the workflow
    completes with every optimiser step done once. More retries than the profile's: each attempt
    trains at most two minutes."""
    workdir, _, _ = slurm_run
    for folder in ("checkpoints", "models", "eval", "selection"):
        shutil.rmtree(workdir / "results" / folder / RUN, ignore_errors=True)
    config = gpu_config(tmp_path / "long.yaml", epochs=EPOCHS_PAST_THE_LIMIT, batch_size=2)
    quick = yaml.safe_load(config.read_text())
    quick["evaluate"].update(runtime_minutes=1, selection_runtime_minutes=1)  # training gets 3 - 1 - 1 minutes
    config.write_text(yaml.safe_dump(quick))
    warning = [f"{rule}:slurm_extra='--signal=TERM@60'" for rule in ("train_variant", "evaluate_variant",
                                                                       "score_selection")]
    result = slurm_snakemake(cluster, workdir, config, "--retries", "5",
                             fit=node_fit(time_limit=3, resources=tuple(warning)))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:] + job_logs(workdir)
    runs = submitted(output)[("group", RUN_GROUP, "")]
    assert len(runs) >= 2 and cluster.job(runs[0])["TimeLimit"] == "00:03:00"
    assert cluster.job(runs[0])["JobState"] == "FAILED"  # it stopped itself before the limit, saved
    log = (workdir / "results" / "logs" / "train" / VARIANT / "seed-0.log").read_text()
    summary = json.loads((workdir / "results" / "models" / RUN / "summary.json").read_text())
    # the attempt that finished training resumed (its log, or the restored summary, says so)
    assert re.search(r"resuming from \S+last.ckpt: \d+ epoch\(s\) finished, step [1-9]", log) or \
        "this run finished earlier" in log, log[-3000:]
    assert summary["resumed_from_epoch"] >= 1
    assert summary["optimizer_steps"] == EPOCHS_PAST_THE_LIMIT * (20 // 2)  # 20 training images, batches of 2
    assert [row["epoch"] for row in summary["history"]] == list(range(1, EPOCHS_PAST_THE_LIMIT + 1))
