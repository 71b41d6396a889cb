"""The synthetic arithmetic task: seeded problems like `What is 37+58?` -> `95`, with difficulty tiers.

A tier is "<digits><op>", e.g. "2+" (two-digit addition), "2-" (two-digit subtraction, negatives allowed),
"3+" (three-digit addition), "2*". The held-out and dev splits are fixed by `split_seed` and never trained on.
"""

from __future__ import annotations

import operator
import random
from dataclasses import dataclass, field

from rlpost.config import ConfigError, check

OPERATORS = {"+": operator.add, "-": operator.sub, "*": operator.mul}


@dataclass
class ArithConfig:
    name: str = "arith"
    tiers: list[str] = field(default_factory=lambda: ["2+", "2-", "3+"])  # "<digits><op>", mixed uniformly
    train_size: int = 4000  # training prompt pool
    eval_size: int = 200  # fixed held-out split (never trained on)
    dev_size: int = 200  # fixed dev split (used to stop the warm start)
    split_seed: int = 1234  # fixes all three splits, independent of the run seed

    def __post_init__(self) -> None:
        check(len(self.tiers) > 0, "tiers", "needs at least one tier like '2+'")
        for tier in self.tiers:
            digits, op = tier[:-1], tier[-1:]
            check(
                digits.isdigit() and 1 <= int(digits) <= 6 and op in OPERATORS,
                "tiers",
                f"{tier!r} is not '<digits 1-6><op>' with op in {''.join(OPERATORS)}",
            )
        for key in ("train_size", "eval_size", "dev_size"):
            check(getattr(self, key) >= 1, key, f"must be >= 1, got {getattr(self, key)}")
        tiers = len(self.tiers)
        needed = sum(-(-getattr(self, key) // tiers) for key in ("train_size", "eval_size", "dev_size"))
        smallest = min(self.tiers, key=distinct_problems)
        check(
            needed <= distinct_problems(smallest),
            "train_size",
            f"train_size+eval_size+dev_size needs {needed} distinct problems per tier, "
            f"but tier {smallest!r} has only {distinct_problems(smallest)}",
        )


def distinct_problems(tier: str) -> int:
    """How many different questions a tier can ask: operand pairs of `digits` digits (0-9 for one digit)."""
    digits = int(tier[:-1])
    per_operand = 10 if digits == 1 else 9 * 10 ** (digits - 1)
    return per_operand**2


def make_problem(rng: random.Random, tier: str) -> dict:
    digits, op = int(tier[:-1]), tier[-1]
    low, high = 10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1
    a, b = rng.randint(low, high), rng.randint(low, high)
    return {"question": f"What is {a}{op}{b}?", "answer": str(OPERATORS[op](a, b)), "tier": tier}


def _draw(rng: random.Random, tiers: list[str], count: int, exclude: set[str]) -> list[dict]:
    problems: list[dict] = []
    attempts = 0
    while len(problems) < count:
        attempts += 1
        if attempts > 50 * count + 1000:
            raise ConfigError(f"data: cannot draw {count} distinct problems from tiers {tiers}; lower data.train_size")
        problem = make_problem(rng, tiers[len(problems) % len(tiers)])
        if problem["question"] not in exclude:
            exclude.add(problem["question"])
            problems.append(problem)
    return problems


def arith_splits(cfg: ArithConfig) -> dict[str, list[dict]]:
    """Disjoint train/dev/eval splits; eval and dev depend only on split_seed, tiers and their sizes."""
    seen: set[str] = set()
    eval_split = _draw(random.Random(cfg.split_seed), cfg.tiers, cfg.eval_size, seen)
    dev_split = _draw(random.Random(cfg.split_seed + 1), cfg.tiers, cfg.dev_size, seen)
    train_split = _draw(random.Random(cfg.split_seed + 2), cfg.tiers, cfg.train_size, seen)
    return {"train": train_split, "dev": dev_split, "eval": eval_split}
