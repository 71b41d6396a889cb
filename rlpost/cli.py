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

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
CONFIG_EXIT = 2


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def _train(cfg: DictConfig) -> float | None:
    import transformers

    from rlpost.trainer import RunStopped, train

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        validated = validate(cfg)
        summary = train(validated, Path(HydraConfig.get().runtime.output_dir))
    except ConfigError as error:  # raised before anything ran or was written
        if os.environ.get("RLPOST_USER_FULL_ERROR") == "1":
            raise
        _config_exit(str(error))
    except RunStopped as error:  # the run stopped on purpose; its checkpoints are intact
        if os.environ.get("RLPOST_USER_FULL_ERROR") == "1":
            raise
        print(f"rlpost-train: stopped: {error}", file=sys.stderr)
        sys.exit(1)
    if summary.get("preempted"):
        sys.exit(0)  # the process is being stopped: end a local multirun here too, not just this job
    return summary.get("eval_accuracy_end")  # the sweep objective for Hydra sweepers


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
    finally:
        if not user_wants_trace:
            os.environ.pop("HYDRA_FULL_ERROR", None)


if __name__ == "__main__":
    train()
