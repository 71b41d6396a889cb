"""Graders that misbehave on purpose, run in the grading pool's worker processes."""

from __future__ import annotations

import os
import time

from rlpost.grading import grade


def crashes_on_marker(completion: str, reference: str) -> tuple[float, str]:
    if "CRASH" in completion:
        os._exit(3)  # the worker process dies without a reply
    return grade(completion, reference)


def raises_on_marker(completion: str, reference: str) -> tuple[float, str]:
    if "RAISE" in completion:
        raise ValueError("cannot grade this one")
    return grade(completion, reference)


def sleeps_on_marker(completion: str, reference: str) -> tuple[float, str]:
    if "SLEEP" in completion:
        time.sleep(60)
    return grade(completion, reference)
