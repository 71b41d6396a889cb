"""Training learns: the default run (GRPO on the embedded tiny model and arithmetic) gains held-out accuracy.

CPU runs are deterministic (same seed, same metrics), so this is one fixed trajectory, not a flaky sample: the
default config shortened to 150 steps, greedy accuracy on the whole 200-prompt held-out split every 25 steps.
Held-out accuracy moves about +-5 points between evals, so the gain is taken over the last three evals
(steps 100, 125, 150) against step 0. Measured with one thread: seed 0 0.235 -> 0.375, 0.395, 0.455 (+17.3),
seed 1 -> 0.345, 0.34, 0.39 (+12.3), seed 2 -> 0.405, 0.42, 0.41 (+17.7); a run that does not learn (a broken
loss sign, advantage or optimizer step) stays at its start or falls. About 12 s on an idle 2-core machine.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import read_jsonl, run_train

pytestmark = pytest.mark.slow
STEPS, EVAL_EVERY, LAST_EVALS = 150, 25, 3
GAIN = 0.10


def test_default_run_gains_ten_points_of_held_out_accuracy(tmp_path):
    run_dir = tmp_path / "run"
    run_train(
        f"steps={STEPS}", f"eval_every={EVAL_EVERY}", "eval_size=200", "checkpoint_every=0", run_dir=run_dir, check=True
    )
    history = json.loads((run_dir / "summary.json").read_text())["eval_history"]
    assert sorted(map(int, history)) == list(range(0, STEPS + 1, EVAL_EVERY))
    start = history["0"]
    last = [history[str(step)] for step in range(STEPS - EVAL_EVERY * (LAST_EVALS - 1), STEPS + 1, EVAL_EVERY)]
    gain = sum(last) / len(last) - start
    assert gain >= GAIN, f"held-out accuracy {start:.3f} -> {last} (mean gain {gain:+.3f} < {GAIN}): {history}"
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    first, final = metrics[1:21], metrics[-20:]
    mean = lambda records, key: sum(r[key] for r in records) / len(records)
    assert mean(final, "reward_mean") > mean(first, "reward_mean"), "training reward did not rise"
