"""sampler=uniform: shuffled epochs, fixed n, a plan that depends only on (seed, step)."""

from __future__ import annotations

from rlpost.samplers import SamplerContext
from rlpost.samplers.uniform import UniformConfig, UniformSampler


def sampler(seed: int = 0, pool: int = 10, k: int = 4, n: int = 3) -> UniformSampler:
    return UniformSampler(UniformConfig(), SamplerContext(num_prompts=pool, prompts_per_step=k, n=n, seed=seed))


def test_each_epoch_visits_every_prompt_once():
    s = sampler(pool=10, k=5)
    first_epoch = [index for step in (0, 1) for index, _ in s.select(step)]
    second_epoch = [index for step in (2, 3) for index, _ in s.select(step)]
    assert sorted(first_epoch) == list(range(10)) and sorted(second_epoch) == list(range(10))
    assert first_epoch != second_epoch  # reshuffled per epoch


def test_fixed_n_and_budget():
    plan = sampler(n=3, k=4).select(7)
    assert len(plan) == 4 and all(n == 3 for _, n in plan)
    assert sum(n for _, n in plan) == 4 * 3


def test_plan_is_a_function_of_seed_and_step():
    a, b = sampler(seed=5), sampler(seed=5)
    b.load_state_dict(a.state_dict())
    assert [a.select(s) for s in range(6)] == [b.select(s) for s in reversed(range(6))][::-1]
    assert sampler(seed=5).select(0) != sampler(seed=6).select(0)
