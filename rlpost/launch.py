"""Launch-side helpers: process rank from Slurm, run status records, exit codes, and safe job dir names.

- `distributed_env` maps a Slurm task of an srun step (one process per task, `hydra.launcher.tasks_per_node`,
  `nodes`) to the torch.distributed variables RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE / MASTER_ADDR /
  MASTER_PORT.
- `run_status` keeps `<run dir>/status.json` current (running -> completed | preempted | requeued | stopped |
  failed | config_error), so a preempted or requeued run is never read as a finished one.
- `job_dirname` is the `rlpost.job_dir` resolver behind `hydra.sweep.subdir`: one valid path component per job.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from omegaconf import OmegaConf

PREEMPTED_EXIT = 75  # EX_TEMPFAIL: a checkpoint was written on a signal; rerun the same command to resume
DIRNAME_LIMIT = 96  # longest job dir name kept as is (file systems allow 255 bytes per component)
_UNSAFE = re.compile(r"[^A-Za-z0-9._,=+@%-]")


def scontrol_hostnames(nodelist: str) -> list[str]:
    """Expand a Slurm node list ("gpu[01-03],cpu7") with `scontrol show hostnames`."""
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
    return out.stdout.split()


def distributed_env(
    environ: Mapping[str, str], hostnames: Callable[[str], list[str]] = scontrol_hostnames
) -> dict[str, str]:
    """torch.distributed rendezvous variables for this Slurm task; {} outside Slurm or when already set.

    RANK = SLURM_PROCID, WORLD_SIZE = SLURM_STEP_NUM_TASKS, LOCAL_RANK = SLURM_LOCALID, LOCAL_WORLD_SIZE = the
    step's tasks on this node, MASTER_ADDR = the first host of SLURM_JOB_NODELIST, MASTER_PORT = 20000 + job id
    mod 20000 (the same in every task of a job, different between jobs sharing a node). Only inside an `srun` step
    (as submitit launches): a batch script itself is one process even when SLURM_NTASKS says more. Variables a
    launcher already set (torchrun) win.
    """
    if "RANK" in environ and "WORLD_SIZE" in environ:
        return {}
    if "SLURM_PROCID" not in environ or "SLURM_STEP_NUM_TASKS" not in environ:
        return {}
    job_id = int(environ.get("SLURM_ARRAY_JOB_ID") or environ.get("SLURM_JOB_ID") or 0)
    job_id += int(environ.get("SLURM_ARRAY_TASK_ID") or 0)
    nodelist = environ.get("SLURM_JOB_NODELIST") or environ.get("SLURM_NODELIST") or ""
    local_tasks = environ.get("SLURM_STEP_TASKS_PER_NODE") or environ.get("SLURM_TASKS_PER_NODE") or "1"
    return {
        "RANK": environ["SLURM_PROCID"],
        "WORLD_SIZE": environ["SLURM_STEP_NUM_TASKS"],
        "LOCAL_RANK": environ.get("SLURM_LOCALID", "0"),
        "LOCAL_WORLD_SIZE": re.match(r"\d+", local_tasks).group(0),
        "MASTER_ADDR": environ.get("MASTER_ADDR") or (hostnames(nodelist)[0] if nodelist else "127.0.0.1"),
        "MASTER_PORT": environ.get("MASTER_PORT") or str(20000 + job_id % 20000),
    }


def export_distributed_env() -> dict[str, str]:
    """Put `distributed_env(os.environ)` into os.environ; return what was set."""
    values = distributed_env(os.environ)
    os.environ.update(values)
    return values


def job_dirname(num: int | str, override_dirname: str, limit: int = DIRNAME_LIMIT) -> str:
    """`{num}_{overrides}` as one valid path component.

    Characters other than letters, digits and `._,=+@%-` (a `/` in a path value, spaces, quotes) become `_`; a name
    that changed that way, or is longer than `limit`, is cut to `limit` and ends with 8 hex digits of the sha1 of
    the original, so two different override sets never share a dir (the job number also keeps them apart).
    """
    name = f"{num}_{override_dirname}" if override_dirname else str(num)
    safe = _UNSAFE.sub("_", name)
    if safe == name and len(name) <= limit:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{safe[: limit - 9]}_{digest}"


def register_resolvers() -> None:
    """`${rlpost.job_dir:${hydra.job.num},${hydra.job.override_dirname}}` for hydra.sweep.subdir."""
    if not OmegaConf.has_resolver("rlpost.job_dir"):
        OmegaConf.register_new_resolver("rlpost.job_dir", lambda num, dirname="": job_dirname(num, str(dirname)))


def write_status(run_dir: Path, status: str, **fields) -> dict:
    """Replace `<run_dir>/status.json` atomically with {"status", "updated", **fields} (plus the Slurm job id)."""
    record = {"status": status, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **fields}
    job = os.environ.get("SLURM_JOB_ID")
    if job:
        record["slurm_job_id"] = job
        if os.environ.get("SLURM_RESTART_COUNT"):
            record["slurm_restarts"] = int(os.environ["SLURM_RESTART_COUNT"])
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / f".status.json.{os.getpid()}"
    tmp.write_text(json.dumps(record) + "\n")
    tmp.replace(run_dir / "status.json")
    return record


def read_status(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}


class _Outcome:
    def __init__(self) -> None:
        self.summary: dict | None = None

    def finish(self, summary: dict) -> None:
        self.summary = summary


@contextmanager
def run_status(run_dir: Path, stopped: type[BaseException] = RuntimeError) -> Iterator[_Outcome]:
    """Record the run's life in status.json: `running`, then how it ended.

    Ends: `completed` (summary without "preempted"), `preempted` (checkpoint written on a signal; exit 75),
    `requeued` (submitit's requeue exited the process under Slurm), `stopped` (`stopped` raised: the run cannot go
    on), `config_error`, `failed` (any other exception, with its message).
    """
    from rlpost.config import ConfigError

    outcome = _Outcome()
    write_status(run_dir, "running")
    try:
        yield outcome
    except ConfigError as error:
        write_status(run_dir, "config_error", error=str(error))
        raise
    except stopped as error:
        write_status(run_dir, "stopped", error=str(error))
        raise
    except SystemExit as error:  # submitit's USR2 handler: `scontrol requeue` then sys.exit(-1)
        requeued = bool(os.environ.get("SLURM_JOB_ID")) and error.code not in (0, None)
        write_status(run_dir, "requeued" if requeued else "exited", exit_code=error.code)
        raise
    except BaseException as error:
        write_status(run_dir, "failed", error=f"{type(error).__name__}: {error}")
        raise
    summary = outcome.summary or {}
    if summary.get("preempted"):
        write_status(run_dir, "preempted", step=summary.get("step"), exit_code=PREEMPTED_EXIT)
    else:
        write_status(run_dir, "completed", step=summary.get("steps"), exit_code=0)
