"""The grading pool: per-completion deadline (the worker is killed), crashes and errors score 0 and are counted,
the other completions of the batch are graded, and the pool keeps working afterwards."""

from __future__ import annotations

import os
import signal
import time

import pytest

from rlpost.grading import WARM_UP
from rlpost.rewards import score
from rlpost.rewards.isolation import RewardFailure
from rlpost.rewards.math_verify import MathVerifyRewardConfig
from rlpost.rewards.pool import GraderPool
from tests.helpers import make_batch

PATHOLOGICAL = r"\boxed{10^{10^{10}}}"  # sympy compares 10**(10**10) with 2: minutes of big-integer work


@pytest.fixture
def pool_factory():
    pools = []

    def make(function: str, workers: int = 2, timeout_s: float = 1.0) -> GraderPool:
        pools.append(GraderPool(function, workers, timeout_s, WARM_UP, preload=("math_verify",)))
        return pools[-1]

    yield make
    for pool in pools:
        pool.close()


def test_pathological_expression_is_killed_counted_as_a_timeout_and_the_pool_goes_on(pool_factory):
    pool = pool_factory("rlpost.grading:grade", workers=2, timeout_s=1.0)
    pool.map([("1", "1")] * 2)  # let both workers start
    started = [worker.process for worker in pool._pool]
    items = [(r"\boxed{2}", "2"), (PATHOLOGICAL, "2"), (r"\boxed{0.5}", r"\frac{1}{2}"), ("3", "4")]
    results, counts = pool.map(items, default=(0.0, "none"))
    assert [score for score, _ in results] == [1.0, 0.0, 1.0, 0.0]  # only the pathological item lost its grade
    assert results[1] == (0.0, "none"), "the timed-out item scores the default"
    assert (counts.timeouts, counts.errors, counts.crashes) == (1, 0, 0)
    assert "timed out after 1.0s" in counts.first_failure
    # the worker past its deadline was killed and replaced; the other one kept its process
    replaced = [process for process in started if all(worker.process is not process for worker in pool._pool)]
    assert len(replaced) == 1 and replaced[0].exitcode == -signal.SIGKILL
    assert all(worker.process.is_alive() for worker in pool._pool)
    # the pool goes on: the next batch is graded in full
    results, counts = pool.map([(r"\boxed{7}", "7")] * 4, default=(0.0, "none"))
    assert [score for score, _ in results] == [1.0] * 4 and counts.failures == 0


def test_math_verify_own_alarm_does_not_interfere_with_the_parent_timer(pool_factory):
    """A parent SIGALRM timer (e.g. rewards/isolation.py's) keeps running while the pool grades."""
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *_: fired.append(True))
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        pool = pool_factory("rlpost.grading:grade", workers=1, timeout_s=5.0)
        results, _ = pool.map([(r"\boxed{\frac{1}{2}}", "0.5")] * 20, default=(0.0, "none"))
        time.sleep(0.6)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert fired == [True] and all(score == 1.0 for score, _ in results)


@pytest.mark.slow  # each replacement imports the test grader module anew (seconds on a busy machine)
def test_a_worker_that_crashes_scores_zero_and_is_replaced(pool_factory):
    pool = pool_factory("tests.rewards.fault_graders:crashes_on_marker", workers=2, timeout_s=5.0)
    items = [(r"\boxed{1}", "1"), ("CRASH", "1"), (r"\boxed{2}", "2"), ("CRASH", "1"), (r"\boxed{3}", "3")]
    results, counts = pool.map(items, default=(0.0, "none"))
    assert [score for score, _ in results] == [1.0, 0.0, 1.0, 0.0, 1.0]
    assert (counts.crashes, counts.timeouts, counts.errors) == (2, 0, 0)
    assert "worker exited with code 3" in counts.first_failure
    assert all(worker.process.is_alive() for worker in pool._pool)


def test_a_grader_that_raises_is_counted_as_an_error(pool_factory):
    pool = pool_factory("tests.rewards.fault_graders:raises_on_marker", workers=1, timeout_s=5.0)
    results, counts = pool.map([("RAISE", "1"), (r"\boxed{1}", "1")], default=(0.0, "none"))
    assert [score for score, _ in results] == [0.0, 1.0]
    assert counts.errors == 1 and "cannot grade this one" in counts.first_failure


def test_a_killed_idle_worker_is_replaced_before_use(pool_factory):
    pool = pool_factory("rlpost.grading:grade", workers=1, timeout_s=5.0)
    pool.map([("1", "1")])  # started and idle
    os.kill(pool._pool[0].process.pid, signal.SIGKILL)
    pool._pool[0].process.join(timeout=5)
    results, counts = pool.map([(r"\boxed{4}", "4")], default=(0.0, "none"))
    assert results[0][0] == 1.0 and counts.failures <= 1


def test_score_with_math_verify_counts_timeouts_and_reports_throughput():
    batch = make_batch([4])
    batch.texts = [r"\boxed{\frac{1}{2}}", "The answer is 0.5.", PATHOLOGICAL, "I do not know"]
    cfg = MathVerifyRewardConfig(workers=2, timeout_s=3.0, max_error_rate=0.5, wrong=-1.0)
    metrics = score(cfg, batch, [{"answer": "0.5"}] * 3 + [{"answer": "2"}])
    assert batch.rewards["correct"].tolist() == [1.0, 1.0, -1.0, -1.0]
    assert batch.reward.tolist() == [1.0, 1.0, -1.0, -1.0]
    assert metrics["reward_timeouts"] == 1 and metrics["reward_errors"] == 0
    assert metrics["accuracy"] == 0.5 and metrics["reward_graded_per_s"] > 0
    # the timed-out completion has no extraction result: it counts under "none"
    found = [metrics[f"answer_{source}_frac"] for source in ("boxed", "answer_is", "none")]
    assert found == [0.25, 0.25, 0.5]


def test_too_many_timeouts_stop_the_step():
    batch = make_batch([2])
    batch.texts = [PATHOLOGICAL, r"\boxed{2}"]
    with pytest.raises(RewardFailure, match=r"1/2 calls failed"):
        score(MathVerifyRewardConfig(workers=1, timeout_s=0.5, max_error_rate=0.1), batch, [{"answer": "2"}] * 2)
