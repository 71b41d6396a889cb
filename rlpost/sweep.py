"""The sweep index: `<sweep dir>/sweep_index.jsonl`, one line per job of a multirun (any launcher).

Each line: {"num", "job_id" (the Slurm job id under hydra/launcher=slurm), "overrides", "choices", "run_dir",
"status" (from the run's status.json: running, completed, preempted, requeued, stopped, failed, config_error; or
"started" before rlpost wrote one), "step", "updated"}. The `SweepIndex` Hydra callback (conf/train.yaml,
hydra.callbacks) rebuilds it from the job dirs whenever a job starts or ends, in whichever process or Slurm job
that happens, and once more when the multirun ends; `rlpost-compare` rebuilds it too. Every rebuild reads all job
dirs and replaces the file atomically, so concurrent jobs never leave a torn or partial index; an index that would
not change is left as it is (a rerun whose jobs are all refused touches nothing).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from rlpost.launch import read_status

INDEX = "sweep_index.jsonl"


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Run dirs under `sweep_dir` (any depth) that Hydra wrote a .hydra/overrides.yaml into."""
    found = {path.parent.parent for path in sweep_dir.glob("**/.hydra/overrides.yaml")}
    return sorted(found, key=lambda p: (_job_num(p), str(p)))


def _job_num(run_dir: Path) -> int:
    head = run_dir.name.split("_", 1)[0]
    return int(head) if head.isdigit() else 1 << 30


def job_record(run_dir: Path) -> dict:
    """One index line for the job in `run_dir`."""
    hydra_yaml = run_dir / ".hydra" / "hydra.yaml"
    hydra = OmegaConf.load(hydra_yaml).hydra if hydra_yaml.is_file() else OmegaConf.create({})
    overrides = OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "overrides.yaml"))
    status = read_status(run_dir)
    return {
        "num": OmegaConf.select(hydra, "job.num", default=None),
        "job_id": OmegaConf.select(hydra, "job.id", default=None),
        "overrides": overrides,
        "choices": {
            group: option
            for group, option in (OmegaConf.to_container(hydra.runtime.choices) if "runtime" in hydra else {}).items()
            if not group.startswith("hydra/")
        },
        "run_dir": str(run_dir),
        "status": status.get("status", "started"),
        "step": status.get("step"),
        "updated": status.get("updated"),
    }


def write_index(sweep_dir: Path) -> list[dict]:
    """Rebuild `<sweep_dir>/sweep_index.jsonl` from the job dirs; return its records."""
    records = [job_record(run_dir) for run_dir in job_dirs(sweep_dir)]
    text = "".join(json.dumps(record) + "\n" for record in records)
    index = sweep_dir / INDEX
    if index.is_file() and index.read_text() == text:  # a job refused before it started changes nothing
        return records
    tmp = sweep_dir / f".{INDEX}.{os.getpid()}"
    tmp.write_text(text)
    tmp.replace(index)
    return records


class SweepIndex(Callback):
    """Keeps sweep_index.jsonl current during a multirun; does nothing in a single run."""

    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        self._update(config)

    def on_job_end(self, config: DictConfig, job_return=None, **kwargs) -> None:
        self._update(config)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        self._update(config)

    @staticmethod
    def _update(config: DictConfig) -> None:
        if OmegaConf.select(config, "hydra.mode") != RunMode.MULTIRUN:
            return
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if sweep_dir.is_dir():
            try:
                write_index(sweep_dir)
            except (OSError, ValueError) as error:  # an index problem never fails a job
                print(f"rlpost: sweep index not updated: {error}")
