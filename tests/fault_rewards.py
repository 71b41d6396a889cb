"""Reward functions that misbehave on purpose, for the isolation tests (loaded by dotted path)."""

from __future__ import annotations

import time


def exact(completion: str, row: dict) -> float:
    return float(completion.strip() == row["answer"])


def raises_on_odd_answers(completion: str, row: dict) -> float:
    if int(row["answer"]) % 2:
        raise ValueError(f"cannot grade {completion!r}")
    return float(completion.strip() == row["answer"])


def sleeps_on_odd_answers(completion: str, row: dict) -> float:
    if int(row["answer"]) % 2:
        time.sleep(30)
    return float(completion.strip() == row["answer"])


NOT_CALLABLE = 3
