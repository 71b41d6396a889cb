"""reward=custom: a user function loaded only from an explicit dotted path, `package.module:function`.

The function is called once per completion as fn(completion: str, row: dict) -> float, with the timeout and
exception isolation of rewards/isolation.py. Nothing is imported unless the config names it.
"""

from __future__ import annotations

import importlib
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


def load_function(dotted: str) -> Callable:
    module_name, _, attribute = dotted.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"reward.function: cannot import {dotted!r} ({error})") from None
    if not callable(function):
        raise ConfigError(f"reward.function: {dotted!r} is not callable")
    return function
