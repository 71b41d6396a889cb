"""A run dir's record of how it was launched: Hydra's .hydra/ files (with the history of every launch) and
run_info.json (per launch: the option chosen in each config group, the overrides, the step it resumed from and the
config changes applied); and of how it ended: summary.json.

Hydra is told not to write .hydra/ itself (`hydra.output_subdir: null` in conf/train.yaml): it would do so before
the command is checked, so a rejected rerun would overwrite a finished run's record. rlpost writes the same three
files once the command is accepted, after moving the previous launch's into .hydra/history/<n>/.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

HYDRA_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")


@dataclass
class Launch:
    """What this command asked for: group -> option chosen, the task overrides, and the .hydra files' text."""

    choices: dict[str, str | None] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    hydra_files: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_hydra(cls, task_cfg) -> Launch:
        """The launch of the running Hydra job (call inside the task function)."""
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf

        hydra = HydraConfig.get()
        choices = {str(k): (None if v is None else str(v)) for k, v in hydra.runtime.choices.items()}
        overrides = [str(o) for o in hydra.overrides.task]
        files = {
            "config.yaml": OmegaConf.to_yaml(task_cfg),
            "hydra.yaml": OmegaConf.to_yaml(HydraConfig.instance().cfg),
            "overrides.yaml": OmegaConf.to_yaml(hydra.overrides.task),
        }
        from rlpost.config import GROUPS

        order = [*GROUPS, *sorted(k for k in choices if k not in GROUPS and not k.startswith("hydra/"))]
        return cls({group: choices[group] for group in order if group in choices}, overrides, files)

    def describe(self) -> str:
        """One console line: `algo=dapo advantage=grpo ... | overrides: algo=dapo steps=3`."""
        chosen = " ".join(f"{group}={option}" for group, option in self.choices.items() if option is not None)
        return f"options: {chosen or '(not launched by Hydra)'} | overrides: {' '.join(self.overrides) or 'none'}"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)


def _archive_hydra_files(hydra_dir: Path) -> None:
    """Move the previous launch's .hydra files into .hydra/history/<n>/ (n = 1, 2, ... in launch order)."""
    present = [name for name in HYDRA_FILES if (hydra_dir / name).exists()]
    if not present:
        return
    history = hydra_dir / "history"
    history.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name) for p in history.iterdir() if p.name.isdigit()]
    target = history / str(max(taken, default=0) + 1)
    target.mkdir()
    for name in present:
        (hydra_dir / name).replace(target / name)


def read_launches(run_dir: Path) -> list[dict]:
    """run_info.json's launches (oldest first); an unreadable file is moved aside, never overwritten."""
    path = run_dir / "run_info.json"
    if not path.exists():
        return []
    try:
        launches = json.loads(path.read_text())["launches"]
        if isinstance(launches, list):
            return launches
    except (OSError, ValueError, KeyError, TypeError):
        pass
    path.replace(path.with_name(f"run_info.damaged.{int(time.time())}.json"))
    return []


def record_launch(run_dir: Path, launch: Launch, *, step: int, checkpoint: Path | None, changes: dict) -> list[dict]:
    """Write this accepted launch's .hydra files (keeping the previous ones) and append it to run_info.json."""
    if launch.hydra_files:
        hydra_dir = run_dir / ".hydra"
        hydra_dir.mkdir(parents=True, exist_ok=True)
        _archive_hydra_files(hydra_dir)
        for name, text in launch.hydra_files.items():
            _write_atomic(hydra_dir / name, text)
    launches = read_launches(run_dir) + [
        {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "resumed_from_step": step,
            "checkpoint": str(checkpoint) if checkpoint is not None else None,
            "choices": launch.choices,
            "overrides": launch.overrides,
            "changes": changes,
        }
    ]
    _write_atomic(run_dir / "run_info.json", json.dumps({"launches": launches}, indent=2) + "\n")
    return launches


def run_summary(run_dir: Path, config: dict, state: dict, seconds: float, launch: Launch) -> dict:
    """summary.json of a finished run: held-out accuracy at the start and the end, the options chosen, the
    overrides, the config changes applied at each resume and the validated `config` record."""
    history = state["eval_history"]
    steps = sorted(history, key=int)
    return {
        "run_dir": str(run_dir),
        "steps": config["run"]["steps"],
        "seconds": round(seconds, 1),
        "eval_accuracy_start": history.get("0", history[steps[0]]) if steps else None,
        "eval_accuracy_end": history[steps[-1]] if steps else None,
        "eval_history": history,
        "choices": launch.choices,  # group -> option chosen (algo=dapo and algo=dr_grpo both have name: grpo)
        "overrides": launch.overrides,
        "resumes": state.get("resumes", []),  # config changes applied at each resume: {"step", "changes"}
        "config": config,
    }
