"""A reward for the Slurm time-limit test (loaded by dotted path in the Slurm job)."""

from __future__ import annotations

import os
import time


def slow_until_requeued(completion: str, row: dict) -> float:
    """Exact match; each call sleeps 0.15 s until Slurm restarts the job (SLURM_RESTART_COUNT > 0).

    With 16 completions a step, the first attempt runs at >= 2.4 s a step whatever the machine, so a 40-step run
    is sure to outlast the time-limit signal; after the requeue the run finishes at full speed.
    """
    if int(os.environ.get("SLURM_RESTART_COUNT") or 0) == 0:
        time.sleep(0.15)
    return float(completion.strip() == row["answer"])
