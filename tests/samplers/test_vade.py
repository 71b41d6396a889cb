"""VADE: two-scale decayed Beta evidence after known batches; Thompson top-B by p(1-p)^2."""

from __future__ import annotations

import numpy as np
import pytest

from rlpost.samplers.vade import VadeConfig, VadeSampler
from tests.helpers import make_batch
from tests.samplers.fakes import context


def test_posterior_after_known_batches():
    sampler = VadeSampler(VadeConfig(visit_decay=0.5, step_decay=0.9), context(num_prompts=10))
    sampler.current_step = 1
    batch = make_batch([4, 4], rewards=[1, 1, 1, 0, 0, 0, 0, 0])  # prompt 0: 3/4, prompt 1: 0/4
    sampler.update([(0, 4), (1, 4)], batch)
    alpha, beta = sampler.posterior(1)
    assert (alpha[0], beta[0]) == (4.0, 2.0)  # Beta(3 + 1, 1 + 1)
    assert (alpha[1], beta[1]) == (1.0, 5.0)
    assert (alpha[2], beta[2]) == (1.0, 1.0)  # never seen: the uniform prior
    # three steps later, prompt 0 again with 1/2: evidence * 0.5 (visit) * 0.9^3 (lag) + new counts
    sampler.current_step = 4
    sampler.update([(0, 2)], make_batch([2], rewards=[1, 0]))
    alpha, beta = sampler.posterior(4)
    assert alpha[0] == pytest.approx(3 * 0.5 * 0.9**3 + 1 + 1)
    assert beta[0] == pytest.approx(1 * 0.5 * 0.9**3 + 1 + 1)
    assert alpha[1] == pytest.approx(0 * 0.9**3 + 1) and beta[1] == pytest.approx(4 * 0.9**3 + 1)


def test_selects_prompts_near_one_third_from_the_candidates():
    sampler = VadeSampler(VadeConfig(candidate_ratio=100), context(num_prompts=6, prompts_per_step=2))
    sampler.successes = np.array([0, 300, 100, 0, 200, 1000.0])  # p ~ 0, 0.5, 1/3, ?, 2/3, 1
    sampler.failures = np.array([1000, 300, 200, 0, 100, 0.0])
    sampler.last_step[:] = 1
    plan = sampler.select(1)
    assert [i for i, _ in plan][0] == 2  # InfoGain peaks at p = 1/3
    assert all(n == 8 for _, n in plan)
