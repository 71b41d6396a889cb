"""Entry points: `rlpost-train` is a Hydra main over conf/train.yaml.

Configuration problems (unknown option, misspelled key, bad value, missing file) print one line naming the key
and what is allowed, and exit with code 2; HYDRA_FULL_ERROR=1 shows the full traceback instead.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from rlpost.config import ConfigError, validate
from rlpost.launch import PREEMPTED_EXIT, export_distributed_env, register_resolvers, run_status

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
CONFIG_EXIT = 2
register_resolvers()  # ${rlpost.job_dir:...} in hydra.sweep.subdir


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def _train(cfg: DictConfig) -> float | None:
    import transformers

    from rlpost.trainer import RunStopped, train

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        validated = validate(cfg)
        _one_process_per_task(validated)
        with run_status(run_dir, stopped=RunStopped) as outcome:
            summary = train(validated, run_dir)
            outcome.finish(summary)
    except ConfigError as error:  # raised before anything ran or was written
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


def _config_exit(message: str) -> None:
    print(f"rlpost-train: config error: {message}", file=sys.stderr)
    sys.exit(CONFIG_EXIT)


def compose_train(overrides: list[str]) -> DictConfig:
    """conf/train.yaml composed with `overrides`, outside a Hydra run (for error messages, tests, benchmarks)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def one_line(error: BaseException) -> str:
    """A configuration error as one line naming the key and what is allowed."""
    text = str(error)
    if isinstance(error, MissingConfigException) and "Could not find '" in text:
        missing = re.search(r"Could not find '([^']+)'", text).group(1)
        group, _, option = missing.rpartition("/")
        options = [line.strip() for line in text.splitlines() if line.startswith("\t")]
        if group and options:
            return f"{group}={option}: no such option; choose one of: {', '.join(options)}"
    match = re.search(r"Multiple values for ([\w/]+)\.", text)
    if match:  # `+group=option` for a group that already has a default (experiment, debug: null)
        group = match.group(1)
        return f"+{group}: {group} is already a config group; choose its option without '+': {group}=<option>"
    match = re.search(r"Could not override '([^']+)'", text)
    if match:
        key = match.group(1)
        return f"{key}: no such key; allowed keys: {', '.join(_allowed_keys(key))} (use +{key}=... to add one)"
    cause = error.__cause__ if isinstance(error.__cause__, OmegaConfBaseException) else None
    lines = [line.strip() for line in (text + "\n" + (str(cause) if cause else "")).splitlines() if line.strip()]
    return "; ".join(line for line in lines if not line.startswith("full_key") and not line.startswith("object_type"))


def _allowed_keys(key: str) -> list[str]:
    """Keys that exist where `key` was looked for, from the composed config without the failing override."""
    overrides = [arg for arg in sys.argv[1:] if "=" in arg and not arg.startswith(("-", key + "=", "hydra"))]
    try:
        node = compose_train(overrides)
        for part in key.split(".")[:-1]:
            node = node[part]
        return sorted(str(k) for k in node.keys())
    except Exception:  # explaining an error must never raise another one
        return ["(see --cfg job)"]


def train() -> None:
    """`rlpost-train [overrides]`."""
    user_wants_trace = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["RLPOST_USER_FULL_ERROR"] = "1" if user_wants_trace else "0"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let composition errors reach us: one line + exit 2
    try:
        _train()
    except (
        ConfigError,
        ConfigCompositionException,
        MissingConfigException,
        OverrideParseException,
        OmegaConfBaseException,
    ) as error:
        if user_wants_trace:
            raise
        _config_exit(one_line(error))
    except Exception as error:  # a multirun job that stopped, re-raised by the sweeper after the others ran
        if user_wants_trace or not _is_stopped(error):
            raise
        _stopped_exit(error)
    finally:
        if not user_wants_trace:
            os.environ.pop("HYDRA_FULL_ERROR", None)


if __name__ == "__main__":
    train()
