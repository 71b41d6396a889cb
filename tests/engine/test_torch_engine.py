"""trainer=torch: micro-batching does not change the loss, log-probs scatter back to their rows, the reference
model is frozen, and gradient checkpointing gives the same gradients."""

import pytest
import torch

from rlpost.algos import ALGOS, policy_loss
from rlpost.algos.common import AGGREGATIONS, Normalizer
from rlpost.batch import RolloutBatch
from rlpost.engine.torch import TorchEngine, TorchEngineConfig
from rlpost.models import ModelConfig, load_model


@pytest.fixture(scope="module")
def tiny():
    return load_model(ModelConfig())


def _random_batch(tokenizer, count=12, groups=3, prompt_width=9, response_width=7, seed=0, shared=True) -> RolloutBatch:
    """Left-padded prompts and right-padded responses of varied lengths, with old/ref log-probs off-policy.

    shared: the rows of a group answer one prompt (as rollouts do); otherwise every row has its own prompt.
    """
    generator = torch.Generator().manual_seed(seed)
    vocab_low, vocab_high = 7, 80  # real characters, no specials
    prompt_lengths = torch.randint(2, prompt_width + 1, (count,), generator=generator)
    response_lengths = torch.randint(1, response_width + 1, (count,), generator=generator)
    response_lengths[0] = response_width - 2  # no row uses the last two columns: they must be trimmable
    prompt_mask = torch.arange(prompt_width)[None, :] >= (prompt_width - prompt_lengths)[:, None]  # [B, P]
    prompt_mask[:, 0] = False  # one all-padding prompt column
    prompt_ids = torch.randint(vocab_low, vocab_high, (count, prompt_width), generator=generator)
    prompt_ids = prompt_ids.masked_fill(~prompt_mask, tokenizer.pad_token_id)
    response_mask = torch.arange(response_width)[None, :] < response_lengths.clamp(max=response_width - 2)[:, None]
    response_ids = torch.randint(vocab_low, vocab_high, (count, response_width), generator=generator)
    response_ids = response_ids.masked_fill(~response_mask, tokenizer.pad_token_id)
    group_index = torch.arange(count) % groups
    if shared:
        prompt_ids, prompt_mask = prompt_ids[group_index], prompt_mask[group_index]
    shape = (count, response_width)
    return RolloutBatch(
        prompt_index=group_index.clone(),
        group_index=group_index,
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        response_ids=response_ids,
        response_mask=response_mask,
        texts=[""] * count,
        sampling_logprobs=-torch.rand(shape, generator=generator) - 2.0,
        advantages=torch.randn(count, generator=generator),
        old_logprobs=-torch.rand(shape, generator=generator) - 3.5,  # ratios far from 1: clipping is exercised
        ref_logprobs=-torch.rand(shape, generator=generator) - 3.5,
    )


def _engine(model, **overrides) -> TorchEngine:
    return TorchEngine(model, TorchEngineConfig(**overrides), total_steps=1, need_reference=False)


def _loss_and_grads(engine, batch, algo_cfg, size, max_tokens):
    """The update_policy inner loop for one minibatch: summed loss and the accumulated gradients."""
    engine.model.zero_grad(set_to_none=True)
    # balanced aggregation counts its subsets over the whole minibatch: Normalizer.of gets the advantages
    norm = Normalizer.of(batch.loss_mask, batch.group_index, 7.0, batch.advantages)
    total = 0.0
    micros = batch.micro_batches(size, max_tokens)
    for micro in micros:
        logprobs, entropy = engine.forward(micro, entropy_grad=algo_cfg.needs_entropy_grad)
        loss, _ = policy_loss(
            algo_cfg,
            logprobs=logprobs,
            old_logprobs=micro.old_logprobs,
            advantages=micro.advantages,
            mask=micro.loss_mask,
            norm=norm,
            group_index=micro.group_index,
            ref_logprobs=micro.ref_logprobs,
            entropy=entropy,
            sampling_logprobs=micro.sampling_logprobs,
        )
        loss.backward()
        total += float(loss.detach())
    grads = {name: p.grad.clone() for name, p in engine.model.named_parameters() if p.grad is not None}
    return total, grads, len(micros)


@pytest.mark.parametrize("loss_agg", AGGREGATIONS)
def test_loss_and_grads_do_not_depend_on_the_micro_batch_split(tiny, loss_agg):
    model, tokenizer = tiny
    engine = _engine(model)
    batch = _random_batch(tokenizer)
    algo_cfg = ALGOS.get("grpo").schema(loss_agg=loss_agg, kl_coef=0.05, entropy_coef=0.01, tis_cap=2.0)
    whole, whole_grads, parts = _loss_and_grads(engine, batch, algo_cfg, size=len(batch), max_tokens=0)
    assert parts == 1
    splits = [(1, 0), (5, 0), (len(batch), 40), (len(batch), 70), (len(batch), 1)]
    for size, max_tokens in splits:
        loss, grads, parts = _loss_and_grads(engine, batch, algo_cfg, size, max_tokens)
        assert parts > 1, (size, max_tokens)
        assert loss == pytest.approx(whole, rel=1e-5, abs=1e-6), (size, max_tokens)
        assert grads.keys() == whole_grads.keys()
        for name, grad in grads.items():  # float32 summation order differs: tolerance relative to the scale
            scale = float(whole_grads[name].abs().max())
            torch.testing.assert_close(grad, whole_grads[name], rtol=1e-4, atol=1e-5 * scale)


def test_token_budget_rows_cover_the_batch_within_the_budget(tiny):
    _, tokenizer = tiny
    batch = _random_batch(tokenizer, count=20)
    for max_tokens in (1, 16, 40, 100, 10_000):
        chunks = batch.micro_batch_rows(len(batch), max_tokens)
        assert sorted(torch.cat(chunks).tolist()) == list(range(len(batch)))
        for rows, micro in zip(chunks, batch.token_budget_micro_batches(max_tokens)):
            padded = len(micro) * (micro.prompt_ids.shape[1] + micro.response_ids.shape[1])
            assert len(rows) == 1 or padded <= max_tokens
            assert micro.prompt_mask[:, 0].any() and micro.response_mask[:, -1].any()  # trimmed to the content
            assert micro.old_logprobs.shape == micro.response_ids.shape == micro.sampling_logprobs.shape
    assert len(batch.token_budget_micro_batches(10_000)) == 1


def test_trim_padding_drops_only_padding(tiny):
    _, tokenizer = tiny
    batch = _random_batch(tokenizer)
    trimmed = batch.trim_padding()
    assert trimmed.prompt_ids.shape[1] == batch.prompt_ids.shape[1] - 1
    assert trimmed.response_ids.shape[1] == batch.response_ids.shape[1] - 2
    assert trimmed.prompt_mask.sum() == batch.prompt_mask.sum()
    assert trimmed.response_mask.sum() == batch.response_mask.sum()
    assert trimmed.trim_padding() is trimmed


@pytest.mark.parametrize("size,max_tokens", [(12, 0), (5, 0), (12, 30)])
def test_logprobs_scatter_back_to_rows(tiny, size, max_tokens):
    model, tokenizer = tiny
    batch = _random_batch(tokenizer)
    reference = _engine(model, micro_batch_size=12)
    with torch.no_grad():
        want = reference.forward(batch)[0] * batch.response_mask
    got = _engine(model, micro_batch_size=size, micro_batch_tokens=max_tokens).logprobs(batch) * batch.response_mask
    assert got.shape == batch.response_ids.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shared", [True, False])
def test_shared_prompt_forward_equals_the_concatenated_forward(tiny, shared):
    model, tokenizer = tiny
    batch = _random_batch(tokenizer, shared=shared)
    algo_cfg = ALGOS.get("grpo").schema(entropy_coef=0.01)
    concatenated = _loss_and_grads(_engine(model, share_prompt=False), batch, algo_cfg, size=12, max_tokens=0)
    engine = _engine(model, share_prompt=True)
    with torch.no_grad():
        for use in (True, False):
            engine.cfg.share_prompt = use
            torch.testing.assert_close(engine.logprobs(batch), _engine(model, share_prompt=False).logprobs(batch))
    engine.cfg.share_prompt = True
    with torch.no_grad():
        logprobs, entropy = engine.forward(batch)
        reference = _engine(model, share_prompt=False).forward(batch)
    torch.testing.assert_close(logprobs * batch.response_mask, reference[0] * batch.response_mask, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(entropy * batch.response_mask, reference[1] * batch.response_mask, rtol=1e-5, atol=1e-5)
    result = _loss_and_grads(engine, batch, algo_cfg, size=12, max_tokens=0)
    assert result[0] == pytest.approx(concatenated[0], rel=1e-5)
    for name, grad in concatenated[1].items():
        scale = float(grad.abs().max())
        torch.testing.assert_close(result[1][name], grad, rtol=1e-4, atol=1e-5 * scale)


def test_reference_model_is_frozen_and_in_eval(tiny):
    model, tokenizer = tiny
    engine = TorchEngine(model, TorchEngineConfig(), total_steps=1, need_reference=True)
    assert not engine.reference.training
    assert not any(p.requires_grad for p in engine.reference.parameters())
    batch = _random_batch(tokenizer)
    ref = engine.logprobs(batch, reference=True)
    assert not ref.requires_grad
    torch.testing.assert_close(ref, engine.logprobs(batch))  # same weights before any update
    engine.model.train()
    engine.logprobs(batch, reference=True)
    assert not engine.reference.training


def test_gradient_checkpointing_gives_the_same_gradients(tiny):
    model, tokenizer = tiny
    batch = _random_batch(tokenizer)
    algo_cfg = ALGOS.get("grpo").schema(entropy_coef=0.01)
    plain = _loss_and_grads(_engine(model, share_prompt=False), batch, algo_cfg, size=6, max_tokens=0)
    checkpointed_model = load_model(ModelConfig())[0]
    engine = _engine(checkpointed_model, gradient_checkpointing=True)  # share_prompt falls back: no KV cache
    assert checkpointed_model.is_gradient_checkpointing
    checkpointed = _loss_and_grads(engine, batch, algo_cfg, size=6, max_tokens=0)
    assert checkpointed[0] == pytest.approx(plain[0], rel=1e-6)
    for name, grad in plain[1].items():
        torch.testing.assert_close(checkpointed[1][name], grad, rtol=1e-5, atol=1e-6 * float(grad.abs().max()))


def test_bad_micro_batch_tokens():
    from rlpost.config import ConfigError

    with pytest.raises(ConfigError, match="micro_batch_tokens"):
        TorchEngineConfig(micro_batch_tokens=-1)
