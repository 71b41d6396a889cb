"""Start-up checks of a whole command, before Hydra creates a run dir or runs a job.

`rlpost-train` calls `preflight(argv)` first: every job of the command (one, or each of a multirun's sweep) is
composed and validated, and then its resources are checked (the output dir can be created, the data files read,
the model's files are whole, the custom reward imports). A bad input thus ends with one line and exit code 2
before anything runs or is written. `--cfg job` validates the config only (no files, no network).
"""

from __future__ import annotations

import difflib
import itertools
import os
import re
import tempfile
from pathlib import Path

from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rlpost.config import CONF_DIR, ConfigError, Validated, check, compose_train, validate

NOTHING_TO_RUN = ("help", "hydra_help", "info", "shell_completion", "version")
# what a bad input raises (ours and Hydra's); rlpost-train turns each into one line and exit code 2
CONFIG_ERRORS = (
    ConfigError,
    ConfigCompositionException,
    MissingConfigException,
    OverrideParseException,
    OmegaConfBaseException,
)


def explain(argv: list[str]) -> str | None:
    """The one line rlpost-train prints for `argv` when preflight refuses it; None when every job passes."""
    try:
        preflight(argv)
    except CONFIG_ERRORS as error:
        return str(error) if isinstance(error, ConfigError) else one_line(error, argv)
    return None


def preflight(argv: list[str]) -> None:
    """Validate every job `rlpost-train argv` would run; raise ConfigError (or a Hydra error) on the first bad one."""
    from hydra import initialize_config_dir
    from hydra._internal.utils import get_args_parser

    args, unknown = get_args_parser().parse_known_args(argv)
    check(not unknown, str(unknown[0]) if unknown else "", "unknown flag; see rlpost-train --help")
    commands = [name for name in ("run", "multirun", "cfg", "info", "shell_completion") if getattr(args, name, None)]
    check(len(commands) <= 1, "--" + " --".join(commands), "only one of --run, --multirun, --cfg, --info at a time")
    if any(getattr(args, flag, None) for flag in NOTHING_TO_RUN) or args.config_dir or args.config_path:
        return  # Hydra answers these itself
    config_name = args.config_name or "train"
    _check_override_syntax(args.overrides)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        if args.cfg:
            validate(_compose(config_name, args.overrides))
            return
        jobs, sweep_dir = _jobs(config_name, args.overrides, multirun=args.multirun)
        for number, overrides in enumerate(jobs):
            try:
                cfg = _compose(config_name, overrides)
                run_dir = sweep_dir or OmegaConf.select(cfg, "hydra.run.dir")
                check_startup(validate(cfg), run_dir, "hydra.sweep.dir" if sweep_dir else "hydra.run.dir")
            except ConfigError as error:
                raise ConfigError(_in_job(str(error), number, jobs)) from None
            except (OmegaConfBaseException, MissingConfigException, ValueError) as error:
                raise ConfigError(_in_job(one_line(error, overrides), number, jobs)) from None


def check_startup(cfg: Validated, run_dir: str | None, run_dir_key: str = "hydra.run.dir") -> None:
    """Resources of one validated job: custom reward import, data rows and sizes, model files, context length,
    and the output dir. Each is checked once per process (cached), so a sweep pays for each distinct one once."""
    from rlpost.data import check_sizes, read_splits
    from rlpost.rewards import check_reward

    check_reward(cfg.reward)
    _check_resume_path(cfg.run.resume)
    splits = read_splits(cfg.data)
    check_sizes(cfg, splits)
    if run_dir:
        check_creatable(Path(run_dir), run_dir_key)
    _check_model_and_context(cfg)
    _check_colocated_engines(cfg)


def _check_colocated_engines(cfg: Validated) -> None:
    """On CPU every rank's vLLM engine reserves rollout.gpu_memory_utilization of the node's RAM (its process,
    trainer included): the ranks started here must fit together. On GPUs each rank has a device of its own."""
    from rlpost.engine.precision import resolve_device

    ranks = getattr(cfg.trainer, "nproc_per_node", 1)
    if cfg.rollout.name != "vllm" or ranks == 1 or resolve_device(cfg.trainer.device).type != "cpu":
        return
    fraction = cfg.rollout.gpu_memory_utilization
    check(
        ranks * fraction <= 1.0,
        "rollout.gpu_memory_utilization",
        f"{fraction} of RAM for each of trainer.nproc_per_node={ranks} vLLM engines on CPU is {ranks * fraction:.2f} "
        f"of this machine's RAM; at most {1.0 / ranks:.2f} each",
    )


def _check_resume_path(resume: object) -> None:
    """resume=<path> must exist (whether it holds an intact checkpoint is decided when the run loads it)."""
    if resume in (None, "", "none", "null", False, "auto"):
        return
    path = Path(str(resume)).expanduser()
    check(path.exists(), "resume", f"no complete checkpoint at {path} (no such file or directory)")


def _check_model_and_context(cfg: Validated) -> None:
    """The model's files, and that the longest prompt + max_new_tokens fits its context."""
    longest, max_positions = _longest_prompt(cfg)
    if not max_positions:
        return
    total = longest + cfg.rollout.max_new_tokens
    check(
        total <= max_positions,
        "rollout.max_new_tokens",
        f"longest prompt + completion is {total} tokens, over the model's context of {max_positions}",
    )


_LONGEST: dict[tuple[str, str], tuple[int, int | None]] = {}  # a sweep checks each model x data pair once


def _longest_prompt(cfg: Validated) -> tuple[int, int | None]:
    """(tokens of the longest rendered prompt, the model's max_position_embeddings or None), after check_model."""
    from rlpost.data import load_splits
    from rlpost.models import check_model

    key = (repr(cfg.model), repr(cfg.data))
    if key not in _LONGEST:
        tokenizer, max_positions = check_model(cfg.model)
        try:
            splits = load_splits(cfg.data, tokenizer, cfg.model.chat_template_kwargs)
        except ConfigError:
            raise
        except Exception as error:  # noqa: BLE001  the chat template or tokenizer cannot render this data
            message = f"model.path: cannot render data={cfg.data.name} with its chat template: {error}"
            raise ConfigError(message) from None
        _LONGEST[key] = (max(len(ids) for split in splits.values() for ids in split.token_ids), max_positions)
    return _LONGEST[key]


def check_creatable(path: Path, key: str) -> None:
    """`path` is a writable directory or can be created (tried on its nearest existing parent; nothing is left)."""
    path = path.expanduser().absolute()
    existing = next(parent for parent in (path, *path.parents) if parent.exists())
    check(existing.is_dir(), key, f"cannot create {path}: {existing} is not a directory")
    if existing == path:  # a run dir already there (a rerun resumes it): nothing is created in it to check
        check(os.access(path, os.W_OK | os.X_OK), key, f"{path} is not writable")
        return
    try:
        tempfile.TemporaryDirectory(dir=existing, prefix=".rlpost-check-").cleanup()
    except OSError as error:
        raise ConfigError(f"{key}: cannot create {path}: {error.strerror or error} ({existing})") from None


_COMPOSED: dict[tuple, DictConfig] = {}


def _compose(config_name: str, overrides: list[str]) -> DictConfig:
    """The job's config with its hydra node (run/sweep dirs), inside preflight's initialized Hydra; memoized."""
    from hydra import compose

    key = (config_name, tuple(overrides))
    if key not in _COMPOSED:
        try:
            _COMPOSED[key] = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
        except CONFIG_ERRORS:
            raise
        except UnicodeDecodeError:
            raise ConfigError(f"{_undecodable(Path(CONF_DIR))}: not UTF-8 text; save it as UTF-8") from None
        except Exception as error:  # noqa: BLE001  Hydra's internals fail on some inputs with plain errors
            raise ConfigError(f"cannot compose the config: {one_line(error)}") from None
    return _COMPOSED[key]


def _undecodable(root: Path) -> str:
    """file:line of the first config file under `root` that is not UTF-8 (Hydra's error does not name it)."""
    for file in sorted(root.rglob("*.yaml")):
        for number, line in enumerate(file.read_bytes().splitlines(), start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return f"{file}:{number}"
    return f"a config file under {root}"


def _check_override_syntax(overrides: list[str]) -> None:
    """Each override is key=value (or ~key); Hydra would otherwise fail deep inside with a traceback."""
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("~+")
        if not key.strip():
            raise ConfigError(f"{override!r}: malformed override; write key=value, e.g. algo=dapo or trainer.lr=1e-5")


def _jobs(config_name: str, overrides: list[str], multirun: bool) -> tuple[list[list[str]], str | None]:
    """Override lists of every job the command runs, and the sweep dir (None for a single run).

    Discrete sweeps (a,b,c; range(); glob()) expand to each value; an interval() to both of its ends (optuna).
    `hydra.sweeper.params` in the config count as sweep overrides too, as Hydra's sweepers read them.
    """
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    parsed = parser.parse_overrides(overrides)
    if not multirun and _mode(_compose(config_name, overrides)) != "MULTIRUN":
        return [overrides], None
    base = _compose(config_name, [o.input_line for o in parsed if not o.is_sweep_override()])
    params = OmegaConf.select(base, "hydra.sweeper.params") or {}
    parsed = parser.parse_overrides([f"{key}={value}" for key, value in params.items()]) + parsed
    choices: dict[str, list[str]] = {}
    for override in parsed:
        key = override.get_key_element()
        choices[key] = [f"{key}={value}" for value in _sweep_values(override)]
    return [list(job) for job in itertools.product(*choices.values())], OmegaConf.select(base, "hydra.sweep.dir")


def _mode(cfg: DictConfig) -> str | None:
    mode = OmegaConf.select(cfg, "hydra.mode")  # a RunMode, or None when the config leaves it to the flag
    return getattr(mode, "name", mode)


def _sweep_values(override) -> list[str]:
    from hydra.core.override_parser.types import IntervalSweep

    if override.is_discrete_sweep():
        return list(override.sweep_string_iterator())
    value = override.value()
    if isinstance(value, IntervalSweep):
        return [str(value.start), str(value.end)]
    return [override.get_value_element_as_str()]


def _in_job(message: str, number: int, jobs: list[list[str]]) -> str:
    """A multirun job's error names the job (Hydra's number, from 0) by its swept values."""
    if len(jobs) == 1:
        return message
    swept = [i for i in range(len(jobs[number])) if len({job[i] for job in jobs}) > 1]
    return f"job {number} of {len(jobs)} ({' '.join(jobs[number][i] for i in swept)}): {message}"


def one_line(error: BaseException, argv: list[str] | None = None) -> str:
    """A configuration error as one line naming the key and what is allowed."""
    text = str(error)
    if isinstance(error, MissingConfigException) and "Could not find '" in text:
        missing = re.search(r"Could not find '([^']+)'", text).group(1)
        group, _, option = missing.rpartition("/")
        options = _listed_options(text)
        if group and options:
            what = f"{group}={option}: no such option" if option else f"{group}: no option given"
            return f"{what}; choose one of: {', '.join(options)}{_did_you_mean(option, options)}"
    match = re.search(r"Multiple values for ([\w/]+)\.", text)
    if match:  # `+group=option` for a group that already has a default (experiment, debug: null)
        group = match.group(1)
        return f"+{group}: {group} is already a config group; choose its option without '+': {group}=<option>"
    match = re.search(r"Could not override '([^']+)'", text)
    if match:
        key = match.group(1)
        allowed = _allowed_keys(key, argv)
        return (
            f"{key}: no such key{_did_you_mean(key.rpartition('.')[2], allowed)}; allowed keys: {', '.join(allowed)}"
            f" (use +{key}=... to add one)"
        )
    cause = error.__cause__ if isinstance(error.__cause__, OmegaConfBaseException) else None
    lines = [line.strip() for line in (text + "\n" + (str(cause) if cause else "")).splitlines() if line.strip()]
    return "; ".join(line for line in lines if not line.startswith(("full_key", "object_type", "See https://")))


def _listed_options(text: str) -> list[str]:
    """The options of a group from Hydra's message, without the config search path it lists after them."""
    listing = text.split("Available options", 1)[-1].split("Config search path", 1)[0]
    return [line.strip() for line in listing.splitlines()[1:] if line.startswith("\t") and line.strip()]


def _did_you_mean(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6) if word else []
    return f" (did you mean {close[0]}?)" if close else ""


def _allowed_keys(key: str, argv: list[str] | None) -> list[str]:
    """Keys that exist where `key` was looked for, from the composed config without the failing override."""
    args = argv if argv is not None else []
    overrides = [arg for arg in args if "=" in arg and not arg.startswith(("-", key + "=", "hydra"))]
    try:
        from hydra import compose
        from hydra.core.global_hydra import GlobalHydra

        kept = [arg for arg in overrides if "," not in arg.split("=", 1)[1]]
        node = compose("train", kept) if GlobalHydra.instance().is_initialized() else compose_train(kept)
        for part in key.split(".")[:-1]:
            node = node[part]
        return sorted(str(k) for k in node.keys())
    except Exception:  # noqa: BLE001  explaining an error must never raise another one
        return ["(see --cfg job)"]
