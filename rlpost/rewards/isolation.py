"""Running reward functions safely: a per-call timeout and exception isolation, with counts.

A reward that raises or runs past its timeout scores 0 for that completion and is counted; when the share of
such failures in a step exceeds `max_error_rate`, the run stops with the first traceback shown.
"""

from __future__ import annotations

import signal
import threading
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

from rlpost.config import check, in_range


class RewardTimeout(Exception):
    pass


class RewardFailure(RuntimeError):
    """Too many reward calls failed in one step."""


@dataclass
class RewardConfig:
    """Keys every reward shares; reward schemas subclass it."""

    name: str = "arith"
    timeout_s: float = 5.0  # per completion; 0 = no timeout
    max_error_rate: float = 0.1  # stop the run when more than this share of a step's calls fail
    overlong_buffer: int = 0  # DAPO soft overlong punishment over the last this-many tokens; 0 = off
    overlong_factor: float = 1.0  # scale of that punishment

    def __post_init__(self) -> None:
        check(self.timeout_s >= 0, "timeout_s", f"must be >= 0 (0 = off), got {self.timeout_s}")
        in_range(self.max_error_rate, "max_error_rate", 0.0, 1.0)
        check(self.overlong_buffer >= 0, "overlong_buffer", f"must be >= 0 (0 = off), got {self.overlong_buffer}")
        check(self.overlong_factor >= 0, "overlong_factor", f"must be >= 0, got {self.overlong_factor}")

    def names(self) -> tuple[str, ...]:
        """Keys this reward writes into batch.rewards (checked against advantage.weights and sampler.metric at
        start-up): its `reward_name` where it has one (math_verify, gsm8k, format, length), else its name."""
        return (getattr(self, "reward_name", self.name),)


@contextmanager
def time_limit(seconds: float):
    """Raise RewardTimeout in the main thread after `seconds` (SIGALRM timer; no-op elsewhere or when 0)."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise RewardTimeout(f"reward call exceeded {seconds}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class CallLog:
    errors: int = 0
    timeouts: int = 0
    first_traceback: str = ""
    calls: int = 0

    @property
    def failures(self) -> int:
        return self.errors + self.timeouts

    def metrics(self) -> dict:
        return {"reward_errors": self.errors, "reward_timeouts": self.timeouts}


@dataclass
class SafeCaller:
    """Call `fn(*args)` with a timeout; failures return `default` and are logged in `log`."""

    timeout_s: float
    default: float = 0.0
    log: CallLog = field(default_factory=CallLog)

    def __call__(self, fn: Callable, *args) -> float:
        self.log.calls += 1
        try:
            with time_limit(self.timeout_s):
                return float(fn(*args))
        except RewardTimeout:
            self.log.timeouts += 1
            self.log.first_traceback = self.log.first_traceback or f"timed out after {self.timeout_s}s"
        except Exception:  # a reward function must never take the run down with one bad completion
            self.log.errors += 1
            self.log.first_traceback = self.log.first_traceback or traceback.format_exc()
        return self.default

    def raise_if_too_many(self, max_error_rate: float, reward_name: str) -> None:
        if self.log.calls and self.log.failures / self.log.calls > max_error_rate:
            raise RewardFailure(
                f"reward={reward_name}: {self.log.failures}/{self.log.calls} calls failed in one step "
                f"(max_error_rate={max_error_rate}); first failure:\n{self.log.first_traceback}"
            )
