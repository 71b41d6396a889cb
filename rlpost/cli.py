"""Entry points: `rlpost-train` is a Hydra main over conf/train.yaml.

Configuration problems (unknown option, misspelled key, bad value, missing file) print one line naming the key
and what is allowed, and exit with code 2; HYDRA_FULL_ERROR=1 shows the full traceback instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from rlpost.config import CONF_DIR, ConfigError, compose_train, validate  # noqa: F401  (compose_train: re-export)
from rlpost.launch import PREEMPTED_EXIT, export_distributed_env, register_resolvers, run_status
from rlpost.preflight import CONFIG_ERRORS, one_line, preflight

CONFIG_EXIT = 2
register_resolvers()  # ${rlpost.job_dir:...} in hydra.sweep.subdir


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def _train(cfg: DictConfig) -> float | None:
    import transformers

    from rlpost.rundir import Launch
    from rlpost.trainer import RunStopped, train

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        validated = validate(cfg)
        _one_process_per_task(validated)
        if _wants_ranks(validated):  # this process starts the ranks; they write the run's status and outputs
            return _run_ranks(validated.trainer.nproc_per_node)
        with run_status(run_dir, stopped=RunStopped) as outcome:  # status.json from outcome.accept() on
            summary = train(validated, run_dir, launch=Launch.from_hydra(cfg), on_accept=outcome.accept)
            outcome.finish(summary)
    except ConfigError as error:  # raised before the command was accepted: nothing in the run dir was written
        if os.environ.get("RLPOST_USER_FULL_ERROR") == "1":
            raise
        _config_exit(str(error))
    except RunStopped as error:  # the run stopped on purpose; its checkpoints are intact
        if os.environ.get("RLPOST_USER_FULL_ERROR") == "1" or _in_multirun():
            raise  # in a multirun Hydra records this job as failed and goes on with the others
        _stopped_exit(error)
    if summary.get("preempted"):
        # Not a success: exit 75 (EX_TEMPFAIL), status.json says "preempted"; a local multirun ends here too.
        sys.exit(PREEMPTED_EXIT)
    return summary.get("eval_accuracy_end")  # the sweep objective for Hydra sweepers


def _in_multirun() -> bool:
    from hydra.types import RunMode

    return HydraConfig.get().mode == RunMode.MULTIRUN


def _stopped_exit(error: BaseException) -> None:
    print(f"rlpost-train: stopped: {error}", file=sys.stderr)
    sys.exit(1)


def _is_stopped(error: BaseException) -> bool:
    trainer = sys.modules.get("rlpost.trainer")  # imported only once a run started
    return trainer is not None and isinstance(error, trainer.RunStopped)


def _one_process_per_task(cfg) -> None:
    """Under Slurm, each task is one process: export RANK/WORLD_SIZE/MASTER_ADDR; trainer=torch needs one task."""
    world = int(export_distributed_env().get("WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    if world > 1 and cfg.trainer.name == "torch":
        raise ConfigError(
            f"hydra.launcher.tasks_per_node: {world} processes per job, but trainer=torch runs in one "
            "(use a multi-process trainer such as trainer=deepspeed_zero2, or tasks_per_node=1 nodes=1)"
        )


def _wants_ranks(validated) -> bool:
    """trainer.nproc_per_node > 1 and this process is not yet one of the ranks."""
    from rlpost.distributed import env_rank

    return getattr(validated.trainer, "nproc_per_node", 1) > 1 and env_rank()[1] == 1


def _run_ranks(nproc: int) -> None:
    """Start `nproc` ranks of this very job in this job's run dir (fixed here, so `${now:}` cannot differ)."""
    from rlpost.distributed import launch_local_ranks

    hydra_cfg = HydraConfig.get()
    run_dir = hydra_cfg.runtime.output_dir
    overrides = [o for o in hydra_cfg.overrides.task if not o.startswith("hydra.run.dir=")]
    code = launch_local_ranks(nproc, [*overrides, f"hydra.run.dir={run_dir}", "hydra.output_subdir=null"])
    if code != 0:
        print(f"rlpost-train: {nproc} ranks in {run_dir} ended with exit code {code}", file=sys.stderr)
        sys.exit(code)


def _config_exit(message: str) -> None:
    print(f"rlpost-train: config error: {message}", file=sys.stderr)
    sys.exit(CONFIG_EXIT)


def train() -> None:
    """`rlpost-train [overrides]`."""
    if "DS_ACCELERATOR" not in os.environ:  # DeepSpeed (imported by transformers) says so on stderr otherwise
        import torch

        os.environ["DS_ACCELERATOR"] = "cuda" if torch.cuda.is_available() else "cpu"
    user_wants_trace = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["RLPOST_USER_FULL_ERROR"] = "1" if user_wants_trace else "0"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let composition errors reach us: one line + exit 2
    try:
        preflight(sys.argv[1:])  # every job, its files, model and output dir: before Hydra creates anything
        _train()
    except CONFIG_ERRORS as error:
        if user_wants_trace:
            raise
        _config_exit(one_line(error, sys.argv[1:]))
    except Exception as error:  # a multirun job that stopped, re-raised by the sweeper after the others ran
        if user_wants_trace or not _is_stopped(error):
            raise
        _stopped_exit(error)
    finally:
        if not user_wants_trace:
            os.environ.pop("HYDRA_FULL_ERROR", None)


if __name__ == "__main__":
    train()
