"""The benchmark's claim on a small config: vade, knapsack, xrpo beat uniform by >= 20% effective-gradient ratio
and reach the target solve rate with fewer rollouts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_samplers.py"


def test_allocators_beat_uniform_on_the_simulated_learner():
    spec = importlib.util.spec_from_file_location("bench_samplers", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_samplers", bench)
    spec.loader.exec_module(bench)
    cfg = bench.SimConfig(pool=256, steps=300, seeds=[0, 1], target=0.6)
    results = bench.run_benchmark(["uniform", "vade", "knapsack", "xrpo"], cfg)
    base = results["uniform"]
    for name in ("vade", "knapsack", "xrpo"):
        assert results[name]["effective_ratio"] >= 1.2 * base["effective_ratio"], name
        assert results[name]["rollouts_to_target"] < base["rollouts_to_target"], name
