"""Training learns: the default run (GRPO on the embedded tiny model and arithmetic) gains held-out accuracy.

CPU runs are deterministic (same seed, same metrics), so this is one fixed trajectory, not a flaky sample: the
default config, shortened to 120 steps and evaluated on the whole 200-prompt held-out split at the start and the
end. At seed 0 the default reaches +10 points within 20-60 steps and about +15 by step 120 (held-out accuracy
moves +-5 points between evals), so the threshold is met with margin but fails for a run that does not learn
(a broken loss sign, advantages or optimizer step leave it at the start or below it).
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import read_jsonl, run_train

pytestmark = pytest.mark.slow
STEPS = 120
GAIN = 0.10


def test_default_run_gains_ten_points_of_held_out_accuracy(tmp_path):
    run_dir = tmp_path / "run"
    run_train(f"steps={STEPS}", "eval_every=0", "eval_size=200", "checkpoint_every=0", run_dir=run_dir, check=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    start, end = summary["eval_accuracy_start"], summary["eval_accuracy_end"]
    assert set(summary["eval_history"]) == {"0", str(STEPS)}
    assert end - start >= GAIN, f"held-out accuracy {start:.3f} -> {end:.3f} in {STEPS} steps: gained < {GAIN}"
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    first, last = metrics[1:21], metrics[-20:]
    mean = lambda records, key: sum(r[key] for r in records) / len(records)
    assert mean(last, "reward_mean") > mean(first, "reward_mean"), "training reward did not rise"
