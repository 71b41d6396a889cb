"""Launch-side helpers: process rank from Slurm, run status records, exit codes, and safe job dir names.

- `distributed_env` maps a Slurm task of an srun step (one process per task, `hydra.launcher.tasks_per_node`,
  `nodes`) to the torch.distributed variables RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE / MASTER_ADDR /
  MASTER_PORT.
- `run_status` keeps `<run dir>/status.json` current (running -> completed | preempted | requeued | stopped |
  failed | config_error), so a preempted or requeued run is never read as a finished one.
- `Preemption` turns SIGTERM/SIGUSR1/SIGUSR2 into a checkpoint at the next step boundary and a clean exit.
- `job_dirname` is the `rlpost.job_dir` resolver behind `hydra.sweep.subdir`: one valid path component per job.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
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


class RunStopped(RuntimeError):
    """The run cannot go on (reward failures, repeated numeric faults, unwritable checkpoints); says why."""


class Outcome:
    """What `run_status` records: `accept()` once the command is accepted, `finish(summary)` once it returns."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir, self.accepted, self.summary = run_dir, False, None

    def accept(self) -> None:
        """The command passed every check: from now on status.json is this launch's (`running`)."""
        self.accepted = True
        write_status(self.run_dir, "running")

    def finish(self, summary: dict) -> None:
        self.summary = summary


@contextmanager
def run_status(run_dir: Path, stopped: type[BaseException] = RunStopped) -> Iterator[Outcome]:
    """Record the run's life in status.json: `running` from `accept()`, then how it ended.

    Ends: `completed` (summary without "preempted"), `preempted` (checkpoint written on a signal; exit 75),
    `requeued` (submitit's requeue exited the process under Slurm), `stopped` (`stopped` raised: the run cannot go
    on), `config_error`, `failed` (any other exception, with its message). A command that ends before `accept()`
    (rejected, or failed while building) writes nothing: status.json still describes the run dir's last run.
    """
    from rlpost.config import ConfigError

    outcome = Outcome(run_dir)
    try:
        yield outcome
    except BaseException as error:
        if outcome.accepted:
            status, fields = _ending(error, stopped, ConfigError)
            write_status(run_dir, status, **fields)
        raise
    summary = outcome.summary or {}
    if summary.get("preempted"):
        write_status(run_dir, "preempted", step=summary.get("step"), exit_code=PREEMPTED_EXIT)
    else:
        write_status(run_dir, "completed", step=summary.get("steps"), exit_code=0)


def _ending(error: BaseException, stopped: type[BaseException], config_error: type[Exception]) -> tuple[str, dict]:
    """(status, fields) of a run that ended with `error`."""
    if isinstance(error, config_error):
        return "config_error", {"error": str(error)}
    if isinstance(error, stopped):
        return "stopped", {"error": str(error)}
    if isinstance(error, SystemExit):  # submitit's USR2 handler: `scontrol requeue` then sys.exit(-1)
        requeued = bool(os.environ.get("SLURM_JOB_ID")) and error.code not in (0, None)
        return "requeued" if requeued else "exited", {"exit_code": error.code}
    return "failed", {"error": f"{type(error).__name__}: {error}"}


class Preemption:
    """SIGTERM/SIGUSR1/SIGUSR2 set a flag; the loop checkpoints at the next step boundary and exits cleanly.

    Under hydra/launcher=slurm, submitit has bound SIGUSR2 (sent `signal_delay_s` before the time limit, or by
    `scancel --signal=USR2`) to its requeue: `scontrol requeue` then sys.exit(-1), right in the handler. Ours
    replaces it, and `hand_over()` calls it only once the checkpoint is written.
    Used as `with Preemption() as preemption:`; the handlers installed before are put back on exit.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)

    def __init__(self) -> None:
        self.requested = 0  # the signal number, once one arrived
        self.previous: dict = {}

    def __enter__(self) -> Preemption:
        self.previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)  # None: installed outside Python

    def _handle(self, signum, frame) -> None:
        self.requested = signum

    def agree(self) -> bool:
        """Whether some rank got a signal; a rank that did not then stops too (with nothing to hand over)."""
        from rlpost import distributed

        if distributed.any_true(bool(self.requested)) and not self.requested:
            self.requested = -1
        return bool(self.requested)

    def hand_over(self) -> None:
        """Pass the signal to the handler bound before ours (submitit's requeue under Slurm; it may exit)."""
        handler = self.previous.get(self.requested)
        if callable(handler):
            handler(self.requested, None)
