"""What sampling_logprobs mean (docs/sampling_logprobs.md): log q(y_t | context) under the distribution the token was
drawn from, i.e. softmax(logits / temperature) renormalised over the top-p nucleus (EOS banned before
min_new_tokens); the engine's log-probs are the untruncated softmax(logits / temperature)."""

from __future__ import annotations

import pytest
import torch

from rlpost.engine.torch import TorchEngine, TorchEngineConfig
from rlpost.models import ModelConfig, load_model
from rlpost.rollout import Request, SamplingConfig
from rlpost.rollout.hf import HFRollout, _nucleus


@pytest.fixture(scope="module")
def tiny():
    return load_model(ModelConfig())


def _requests(tokenizer):
    chats = [[{"role": "user", "content": q}] for q in ("What is 37+58?", "What is 5-91?")]
    ids = [
        tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=True, return_dict=False) for c in chats
    ]
    return [Request(i, list(prompt), 4) for i, prompt in enumerate(ids)]


@torch.no_grad()
def _tempered_logits(model, batch, temperature):
    """[B, T, V] logits / temperature at every response position (full forward, no cache)."""
    input_ids = torch.cat([batch.prompt_ids, batch.response_ids], dim=1)
    attention = torch.cat([batch.prompt_mask, torch.ones_like(batch.response_mask)], dim=1).long()
    positions = (attention.cumsum(dim=1) - 1).clamp(min=0)
    logits = model(input_ids=input_ids, attention_mask=attention, position_ids=positions).logits.float()
    return logits[:, batch.prompt_ids.shape[1] - 1 : -1] / temperature


@pytest.mark.parametrize("use_generate", [False, True])
def test_top_p_sampling_logprobs_are_renormalised_over_the_nucleus(tiny, use_generate):
    model, tokenizer = tiny
    temperature, top_p = 0.8, 0.7
    cfg = SamplingConfig(temperature=temperature, top_p=top_p, max_new_tokens=6, use_generate=use_generate)
    batch = HFRollout(model, tokenizer, cfg).generate(_requests(tokenizer), seed=2)
    logits = _tempered_logits(model.eval(), batch, temperature)  # [B, T, V]
    rows, width, vocab = logits.shape
    nucleus = _nucleus(logits.reshape(-1, vocab), top_p).reshape(rows, width, vocab)
    want = nucleus.log_softmax(dim=-1).gather(-1, batch.response_ids[..., None]).squeeze(-1)  # log q
    mask = batch.response_mask
    torch.testing.assert_close(batch.sampling_logprobs[mask], want[mask], rtol=1e-4, atol=1e-4)
    engine = TorchEngine(model, TorchEngineConfig(), total_steps=1, need_reference=False, temperature=temperature)
    trained = engine.logprobs(batch)  # log pi_T: the full tempered softmax
    log_mass = torch.logsumexp(nucleus, dim=-1) - torch.logsumexp(logits, dim=-1)  # log pi_T(nucleus) <= 0
    torch.testing.assert_close(batch.sampling_logprobs[mask], (trained - log_mass)[mask], rtol=1e-4, atol=1e-4)
    assert (batch.sampling_logprobs[mask] >= trained[mask] - 1e-5).all()
    assert (log_mass[mask] < -1e-3).any()  # the nucleus really cut something here
