"""reward=custom: a user function loaded only from an explicit dotted path, `package.module:function`.

The function is called once per completion as fn(completion: str, row: dict) -> float, with the timeout and
exception isolation of rewards/isolation.py. Nothing is imported unless the config names it; it is imported at
start-up (rlpost/preflight.py), so a module that is missing, has a syntax error or raises on import stops the
command with one line before the model loads. The working directory is on the import path, as with `python -m`.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from rlpost.config import ConfigError, check
from rlpost.rewards.isolation import RewardConfig


@dataclass
class CustomRewardConfig(RewardConfig):
    name: str = "custom"
    function: str = "???"  # "package.module:function", importable from the Python path
    reward_name: str = "custom"  # key of this reward in batch.rewards and metrics

    def __post_init__(self) -> None:
        super().__post_init__()
        check(
            ":" in self.function and all(self.function.split(":")),
            "function",
            f"{self.function!r} must be 'package.module:function'",
        )

    def names(self) -> tuple[str, ...]:
        return (self.reward_name,)


def load_function(dotted: str) -> Callable:
    """The callable named by 'package.module:function'; any failure is a ConfigError naming reward.function."""
    module_name, _, attribute = dotted.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # `rlpost-train` (a console script) would not see ./my_rewards.py
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            raise ConfigError(f"reward.function: cannot import {dotted!r}: no module named {error.name!r}") from None
        raise ConfigError(f"reward.function: importing {module_name!r} failed: {_where(error)}") from None
    except SyntaxError as error:
        where = f"{error.filename}:{error.lineno}" if error.filename else module_name
        raise ConfigError(f"reward.function: syntax error in {where}: {error.msg}") from None
    except BaseException as error:  # user code at import time: anything, even SystemExit
        if isinstance(error, KeyboardInterrupt):
            raise
        raise ConfigError(f"reward.function: importing {module_name!r} failed: {_where(error)}") from None
    function = getattr(module, attribute, None)
    if function is None:
        raise ConfigError(f"reward.function: module {module_name!r} has no attribute {attribute!r}")
    if not callable(function):
        raise ConfigError(f"reward.function: {dotted!r} is not callable")
    try:
        inspect.signature(function).bind("completion", {})
    except TypeError:
        raise ConfigError(f"reward.function: {dotted!r} must take (completion: str, row: dict)") from None
    except ValueError:  # builtins without a signature: let the call decide
        pass
    return function


def _where(error: BaseException) -> str:
    """`Type: message (file:line)` of an exception, at the innermost frame of the user's code."""
    frames = traceback.extract_tb(error.__traceback__)
    user = [frame for frame in frames if "importlib" not in frame.filename]
    location = f" ({user[-1].filename}:{user[-1].lineno})" if user else ""
    message = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {message}{location}" if message else f"{type(error).__name__}{location}"
