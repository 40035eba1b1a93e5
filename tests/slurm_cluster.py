"""A real single-node SLURM cluster for tests: installed with apt when missing (on CI, or when
COCOSEG_INSTALL_SLURM=1), started as child processes, stopped by PID. Only the daemons this
module started are ever signalled."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ["munge", "slurmctld", "slurmd", "slurm-client"]
# Inside a job, snakemake-executor-plugin-slurm strips SLURM_* variables (SLURM_CONF too) before
# `srun`, which then reads the default path: the test links it to its own file for its lifetime.
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")


class ClusterUnavailable(Exception):
    """Why no cluster could be started here; the tests skip with this message."""


def _run(command: list[str], timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def install() -> None:
    if all(shutil.which(tool) for tool in ("slurmctld", "slurmd", "sbatch", "munged")):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ClusterUnavailable("SLURM is not installed, and installing it needs root and apt-get")
    if not (os.environ.get("CI") or os.environ.get("COCOSEG_INSTALL_SLURM")):
        raise ClusterUnavailable("SLURM is not installed; set COCOSEG_INSTALL_SLURM=1 to let the tests "
                                 f"apt-get install {' '.join(PACKAGES)} (CI does this by itself)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
        result = _run(command, timeout=600, env=env)
        if result.returncode:
            raise ClusterUnavailable(f"{' '.join(command)} failed: {result.stderr.strip()[-300:]}")


class SlurmCluster:
    """`with SlurmCluster(folder) as cluster:` gives `cluster.env`, an environment whose
    SLURM_CONF points at this cluster, for sbatch, squeue and snakemake."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.processes: list[subprocess.Popen] = []
        self.node = socket.gethostname().split(".")[0]
        self.env = dict(os.environ)
        self.linked_conf = False

    def __enter__(self) -> "SlurmCluster":
        if os.geteuid() != 0:
            raise ClusterUnavailable("starting slurmctld and slurmd needs root")
        install()
        try:
            self._start_munge()
            self._write_config()
            self._start_slurm()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _spawn(self, command: list[str], log: str) -> subprocess.Popen:
        out = open(self.root / log, "wb")
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        return process

    def _start_munge(self) -> None:
        if _run(["bash", "-c", "munge -n | unmunge"], timeout=10).returncode == 0:
            return  # a munged is already serving: use it, never stop it
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            _run(["mungekey", "--create"], check=True)
            shutil.chown(key, "munge", "munge")
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        self._spawn(["setpriv", "--reuid=munge", "--regid=munge", "--init-groups", "munged", "--foreground"],
                    "munged.log")
        for _ in range(100):
            if _run(["bash", "-c", "munge -n | unmunge"], timeout=10).returncode == 0:
                return
            time.sleep(0.1)
        raise ClusterUnavailable(f"munged did not start: {(self.root / 'munged.log').read_text()[-300:]}")

    def _write_config(self) -> None:
        layout = _run(["slurmd", "-C"]).stdout.splitlines()[0]
        fields = dict(item.split("=", 1) for item in layout.split() if "=" in item)
        memory = int(int(fields["RealMemory"]) * 0.9)
        node = " ".join(f"{k}={fields[k]}" for k in ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket",
                                                       "ThreadsPerCore") if k in fields)
        self.cpus, self.memory_mb = int(fields["CPUs"]), memory
        state = self.root / "state"
        shutil.rmtree(state, ignore_errors=True)  # stale state brings the node back drained
        (state / "ctld").mkdir(parents=True)
        (state / "d").mkdir(parents=True)
        conf = self.root / "slurm.conf"
        conf.write_text(f"""
ClusterName=cocoseg-test
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={state / 'ctld'}
SlurmdSpoolDir={state / 'd'}
SlurmctldPidFile={state / 'slurmctld.pid'}
SlurmdPidFile={state / 'slurmd.pid'}
SlurmctldLogFile={self.root / 'slurmctld.log'}
SlurmdLogFile={self.root / 'slurmd.log'}
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
MinJobAge=600
SchedulerType=sched/backfill
GresTypes=gpu
NodeName={self.node} NodeAddr=127.0.0.1 {node} RealMemory={memory} Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
        (self.root / "gres.conf").write_text(f"NodeName={self.node} Name=gpu File=/dev/null\n")
        self.env["SLURM_CONF"] = str(conf)
        if SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink():
            raise ClusterUnavailable(f"{SYSTEM_CONF} exists: this machine belongs to another SLURM cluster")
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONF.symlink_to(conf)
        self.linked_conf = True

    def _start_slurm(self) -> None:
        conf = self.env["SLURM_CONF"]
        self._spawn(["slurmctld", "-D", "-i", "-f", conf], "slurmctld.out")
        self._spawn(["slurmd", "-D", "-f", conf, "-N", self.node], "slurmd.out")
        deadline = time.time() + 60
        while time.time() < deadline:
            state = _run(["sinfo", "-h", "-N", "-o", "%T"], env=self.env, timeout=10).stdout.strip()
            if state == "idle":
                return
            if any(p.poll() is not None for p in self.processes):
                break
            time.sleep(0.2)
        logs = "".join((self.root / name).read_text()[-400:] for name in ("slurmctld.log", "slurmd.log")
                       if (self.root / name).exists())
        raise ClusterUnavailable(f"the SLURM node did not become idle (state {state!r}): {logs}")

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes.clear()
        if self.linked_conf:
            SYSTEM_CONF.unlink(missing_ok=True)
            self.linked_conf = False

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as a dict (TRES, TimeLimit, ...)."""
        text = _run(["scontrol", "show", "job", "-o", job_id], env=self.env, timeout=10).stdout
        return dict(re.findall(r"(\S+?)=(\S*)", text))
