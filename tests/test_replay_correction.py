"""Replayed rollouts (sampler=dots) are importance-corrected with their own sampling log-probs."""

from __future__ import annotations

import json

from tests.conftest import run_train


def test_replayed_groups_are_off_policy_corrected(tmp_path):
    run_train("sampler=dots", "debug=fast", "steps=6", "eval_size=8", run_dir=tmp_path, check=True)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()][1:]
    replaying = [r for r in records if r.get("dots_replayed", 0) > 0]
    fresh_only = [r for r in records if r.get("dots_replayed", 0) == 0]
    assert replaying and fresh_only
    # on-policy fresh rows have ratio 1 exactly; replayed rows carry pi_theta / pi_behaviour != 1
    assert all(r["ratio_mean"] == 1.0 for r in fresh_only)
    assert any(abs(r["ratio_mean"] - 1.0) > 1e-4 for r in replaying)
