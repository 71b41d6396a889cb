"""rollout=hf's KV-cached sampling loop agrees with transformers' generate and with the engine's log-probs."""

import pytest
import torch

from rlpost.engine.torch import TorchEngine, TorchEngineConfig
from rlpost.models import ModelConfig, load_model
from rlpost.rollout import Request, SamplingConfig
from rlpost.rollout.hf import HFRollout, _nucleus


@pytest.fixture(scope="module")
def tiny():
    return load_model(ModelConfig())


def _requests(tokenizer, n=4):
    questions = ["What is 37+58?", "What is 5-91?", "What is 123+456?"]
    chats = [[{"role": "user", "content": q}] for q in questions]
    ids = [
        tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=True, return_dict=False) for c in chats
    ]
    return [Request(i, list(prompt), n) for i, prompt in enumerate(ids)]


def test_greedy_loop_equals_generate(tiny):
    model, tokenizer = tiny
    loop = HFRollout(model, tokenizer, SamplingConfig(max_new_tokens=8)).generate(_requests(tokenizer), 0, greedy=True)
    hf = HFRollout(model, tokenizer, SamplingConfig(max_new_tokens=8, use_generate=True))
    reference = hf.generate(_requests(tokenizer), 0, greedy=True)
    assert torch.equal(loop.response_ids, reference.response_ids)
    assert torch.equal(loop.response_mask, reference.response_mask)
    assert loop.texts == reference.texts


@pytest.mark.parametrize("temperature,min_new", [(1.0, 0), (0.7, 6)])
def test_sampling_logprobs_match_the_engine(tiny, temperature, min_new):
    model, tokenizer = tiny
    cfg = SamplingConfig(temperature=temperature, max_new_tokens=8, min_new_tokens=min_new)
    batch = HFRollout(model, tokenizer, cfg).generate(_requests(tokenizer), seed=3)
    assert len(batch) == 12 and batch.sampling_logprobs.shape == batch.response_ids.shape
    assert torch.all(batch.response_lengths >= min(min_new + 1, 8) if min_new else batch.response_lengths >= 1)
    engine = TorchEngine(model, TorchEngineConfig(), total_steps=1, need_reference=False, temperature=temperature)
    expected = engine.logprobs(batch)
    mask = batch.response_mask.clone()
    if min_new:  # the sampler's EOS ban renormalises the first min_new steps; later steps are unconstrained
        mask[:, :min_new] = False
    torch.testing.assert_close(batch.sampling_logprobs[mask], expected[mask], rtol=1e-4, atol=1e-4)


def test_nucleus_keeps_the_smallest_set_above_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(_nucleus(logits, 0.7))
    assert kept.tolist() == [[True, True, False, False]]
    assert torch.isfinite(_nucleus(logits, 0.01)).sum() == 1


def test_growing_cache_layer_equals_dynamic_layer_without_reallocating():
    from transformers.cache_utils import DynamicLayer

    from rlpost.rollout.hf import _GrowingLayer

    torch.manual_seed(0)
    keys, values = torch.randn(3, 2, 5, 4), torch.randn(3, 2, 5, 4)
    grown, reference = _GrowingLayer(keys, values, capacity=9), DynamicLayer()
    reference.update(keys, values)
    buffer = grown.keys.data_ptr()
    for _ in range(4):  # fills the capacity exactly
        new_k, new_v = torch.randn(3, 2, 1, 4), torch.randn(3, 2, 1, 4)
        got, want = grown.update(new_k, new_v), reference.update(new_k, new_v)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        assert grown.get_seq_length() == reference.get_seq_length()
        assert grown.keys.data_ptr() == buffer  # written in place, never copied
    assert grown.get_seq_length() == 9
