"""logger=wandb: the run's config, per-step metrics and a table of sample completions in Weights & Biases.

Offline (files under <run dir>/wandb, `wandb sync` later) when there is no API key or WANDB_MODE=offline. The W&B
run id is kept in <run dir>/wandb_run_id, so rerunning the command after a stop continues the same W&B run; the
trainer only logs steps after the checkpoint it resumed from. Runs of one multirun share a group (the sweep dir's
name) and are named by their overrides; job_type says what kind of job it is.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

RUN_ID_FILE = "wandb_run_id"
MODES = ("auto", "online", "offline", "disabled")


@dataclass
class WandbLoggerConfig:
    name: str = "wandb"
    progress: bool = True  # the console progress bar stays on
    project: str = "rlpost"
    entity: str = ""  # "" = your default entity
    group: str = ""  # "" = the multirun's sweep dir name (single runs: none)
    job_type: str = "train"
    tags: list[str] = field(default_factory=list)
    mode: str = "auto"  # auto: online with an API key (or WANDB_MODE), else offline | online | offline | disabled
    samples_every: int = 10  # log the sample completions as a table every this many steps; 0 = never

    def __post_init__(self) -> None:
        from rlpost.config import check

        check(self.mode in MODES, "mode", f"{self.mode!r} is not one of {', '.join(MODES)}")
        check(self.samples_every >= 0, "samples_every", f"must be >= 0, got {self.samples_every}")


def resolve_mode(mode: str) -> str:
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    has_key = bool(os.environ.get("WANDB_API_KEY")) or (Path.home() / ".netrc").is_file()
    return "online" if has_key else "offline"


def _hydra_context(run_dir: Path) -> tuple[dict, str, str]:
    """(resolved config, group, name) from Hydra's files and state, when there are any."""
    config, group, name = {}, "", run_dir.name
    config_file = run_dir / ".hydra" / "config.yaml"
    if config_file.is_file():
        from omegaconf import OmegaConf

        config = OmegaConf.to_container(OmegaConf.load(config_file), resolve=False)
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized():
            hydra_cfg = HydraConfig.get()
            if hydra_cfg.mode == RunMode.MULTIRUN:
                group = Path(hydra_cfg.sweep.dir).name
                name = hydra_cfg.job.override_dirname or name
    except Exception:  # no Hydra (tests, library use): plain names
        pass
    return config, group, name


class WandbSink:
    """Mirrors RunLog's metrics and samples into one W&B run."""

    def __init__(self, run_dir: Path, cfg: WandbLoggerConfig) -> None:
        self.run_dir, self.cfg, self._run = run_dir, cfg, None

    @property
    def run(self):
        """The W&B run, started at the first record: by then the accepted command's .hydra/config.yaml exists."""
        if self._run is None:
            import wandb

            config, group, name = _hydra_context(self.run_dir)
            id_file = self.run_dir / RUN_ID_FILE
            run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:8]
            id_file.write_text(run_id + "\n")
            self._run = wandb.init(
                project=self.cfg.project,
                entity=self.cfg.entity or None,
                group=self.cfg.group or group or None,
                job_type=self.cfg.job_type,
                tags=list(self.cfg.tags) or None,
                name=name,
                id=run_id,
                resume="allow",
                dir=str(self.run_dir),
                mode=resolve_mode(self.cfg.mode),
                config=config,
            )
        return self._run

    def metrics(self, record: dict) -> None:
        step = int(record["step"])
        self.run.log({key: value for key, value in record.items() if key != "step"}, step=step)

    def samples(self, step: int, rows: list[dict]) -> None:
        if not rows or not self.cfg.samples_every or step % self.cfg.samples_every:
            return
        import wandb

        columns = ["step", *rows[0].keys()]
        table = wandb.Table(columns=columns, data=[[step, *(row.get(c) for c in columns[1:])] for row in rows])
        self.run.log({"samples": table}, step=step)

    def close(self) -> None:
        if self._run is not None:
            self._run.finish()
