"""Real Qwen3 vocabulary offline: tokenizer ids, Qwen3's published chat template (system prompt, generation prompt,
enable_thinking on and off), multi-EOS stopping in rollouts and eval, chunked log-probs at 151,936 words, presets."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from transformers import Qwen3Config, Qwen3ForCausalLM

from rlpost.cli import compose_train
from rlpost.config import ConfigError, validate
from rlpost.models import ModelConfig, eos_token_ids, load_model
from rlpost.models.qwen import ENDOFTEXT_ID, IM_END_ID, IM_START_ID
from rlpost.ops.logprobs import naive_token_logprobs, token_logprobs
from rlpost.rollout import Request, SamplingConfig
from rlpost.rollout.hf import HFRollout, response_mask_until_eos

VOCAB = 151936
PRESETS = ("qwen3-0.6b", "qwen3-1.7b", "qwen3-4b", "qwen3-8b", "qwen3-14b", "qwen3-30b-a3b")


def test_tokenizer_ids_and_special_tokens(qwen_tokenizer):
    tokenizer = qwen_tokenizer
    assert len(tokenizer) == 151669
    assert tokenizer("What is 37+58?")["input_ids"] == [3838, 374, 220, 18, 22, 10, 20, 23, 30]
    expected = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<think>": 151667}
    assert {token: tokenizer.convert_tokens_to_ids(token) for token in expected} == expected
    assert (tokenizer.eos_token, tokenizer.pad_token, tokenizer.bos_token) == ("<|im_end|>", "<|endoftext|>", None)
    assert tokenizer.decode([151644, 872, 198, 151645], skip_special_tokens=True) == "user\n"


def test_chat_template_system_prompt_and_generation_prompt(qwen_tokenizer):
    chat = [{"role": "system", "content": "Reason step by step."}, {"role": "user", "content": "What is 2+2?"}]
    text = qwen_tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|im_start|>system\nReason step by step.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    ids = qwen_tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert ids[0] == IM_START_ID and ids[-3:] == [IM_START_ID, 77091, 198]  # "<|im_start|>assistant\n"
    assert ids.count(IM_END_ID) == 2
    no_prompt = qwen_tokenizer.apply_chat_template(chat, add_generation_prompt=False, tokenize=False)
    assert no_prompt == text.removesuffix("<|im_start|>assistant\n")


def test_enable_thinking_on_and_off(qwen_tokenizer):
    chat = [{"role": "user", "content": "What is 2+2?"}]
    render = lambda **kw: qwen_tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False, **kw)
    thinking = render(enable_thinking=True)
    assert thinking == render() == "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    assert render(enable_thinking=False) == thinking + "<think>\n\n</think>\n\n"
    ids = qwen_tokenizer.apply_chat_template(
        chat, add_generation_prompt=True, tokenize=True, return_dict=False, enable_thinking=False
    )
    assert ids[-4:] == [151667, 271, 151668, 271]  # <think> \n\n </think> \n\n
    # the assistant's own earlier answer keeps only its final part in the history (Qwen3's template)
    history = chat + [{"role": "assistant", "content": "<think>\nadd\n</think>\n\n4"}, {"role": "user", "content": "x"}]
    assert "<|im_start|>assistant\n4<|im_end|>" in qwen_tokenizer.apply_chat_template(history, tokenize=False)


def test_data_render_passes_the_template_switch(qwen_tokenizer):
    from rlpost.data import render

    rows = [{"question": "What is 2+2?", "answer": "4"}]
    on = render(rows, qwen_tokenizer).token_ids[0]
    off = render(rows, qwen_tokenizer, {"enable_thinking": False}).token_ids[0]
    assert off[: len(on)] == on and off[len(on) :] == [151667, 271, 151668, 271]


def _scripted_model(eos_ids: list[int]) -> Qwen3ForCausalLM:
    """Greedy next token = a function of the last token: ... X -> A -> <|endoftext|>, ... Y -> <|im_end|>.

    The attention and MLP outputs are zeroed, so the last hidden state is the last token's embedding (normalised);
    each scripted token embeds to a basis vector and the LM head reads that coordinate.
    """
    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        tie_word_embeddings=False,
        eos_token_id=eos_ids[0],
    )
    model = Qwen3ForCausalLM(config)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embed, head = model.model.embed_tokens.weight, model.lm_head.weight
        embed.zero_()
        embed[:, 0] = 1.0  # every other token -> coordinate 0 -> token 10 ("+")
        head.zero_()
        head[10, 0] = 1.0
        script = {3838: (1, 32), 32: (2, ENDOFTEXT_ID), 30: (3, IM_END_ID)}  # "What" -> "A" -> EOT; "?" -> im_end
        for token, (axis, successor) in script.items():
            embed[token].zero_()
            embed[token, axis] = 1.0
            head[successor, axis] = 5.0
    model.generation_config.eos_token_id = eos_ids
    model.generation_config.pad_token_id = ENDOFTEXT_ID
    return model.eval()


@pytest.mark.parametrize("use_generate", [False, True])
@pytest.mark.parametrize("greedy", [True, False])
def test_every_eos_id_of_the_generation_config_ends_a_completion(qwen_tokenizer, use_generate, greedy):
    model = _scripted_model([IM_END_ID, ENDOFTEXT_ID])
    assert eos_token_ids(model, qwen_tokenizer) == (IM_END_ID, ENDOFTEXT_ID)
    prompts = [[151644, 872, 198, 3838], [151644, 872, 198, 30]]  # ... "What" and ... "?"
    cfg = SamplingConfig(max_new_tokens=6, use_generate=use_generate, temperature=0.5)
    batch = HFRollout(model, qwen_tokenizer, cfg).generate([Request(i, p, 2) for i, p in enumerate(prompts)], 0, greedy)
    assert batch.response_ids[0, :2].tolist() == [32, ENDOFTEXT_ID]  # "A" then <|endoftext|>: stopped
    assert batch.response_ids[2, :1].tolist() == [IM_END_ID]
    assert batch.response_lengths.tolist() == [2, 2, 1, 1]
    assert not batch.truncated.any()
    assert batch.texts == ["A", "A", "", ""]
    # the same model told about <|im_end|> only runs past <|endoftext|> to max_new_tokens
    model.generation_config.eos_token_id = [IM_END_ID]
    single = HFRollout(model, qwen_tokenizer, cfg).generate([Request(0, prompts[0], 1)], 0, greedy)
    assert single.truncated.tolist() == [True] and single.response_lengths.tolist() == [6]


def test_min_new_tokens_bans_every_eos_id(qwen_tokenizer):
    model = _scripted_model([IM_END_ID, ENDOFTEXT_ID])
    cfg = SamplingConfig(max_new_tokens=5, min_new_tokens=3)
    batch = HFRollout(model, qwen_tokenizer, cfg).generate([Request(0, [151644, 872, 198, 30], 4)], seed=1)
    first = batch.response_ids[:, :3]
    assert not torch.isin(first, torch.tensor([IM_END_ID, ENDOFTEXT_ID])).any()
    assert (batch.response_lengths >= 4).all()  # an EOS is allowed (and here likely) from the fourth token on


def test_response_mask_until_any_eos():
    ids = torch.tensor([[5, ENDOFTEXT_ID, 7, 7], [5, 6, IM_END_ID, ENDOFTEXT_ID], [5, 6, 7, 8]])
    mask, truncated = response_mask_until_eos(ids, (IM_END_ID, ENDOFTEXT_ID))
    assert mask.sum(dim=1).tolist() == [2, 3, 4] and truncated.tolist() == [False, False, True]
    assert response_mask_until_eos(ids, IM_END_ID)[0].sum(dim=1).tolist() == [4, 3, 4]


def test_chunked_logprobs_at_the_qwen_vocabulary():
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 11, 32, generator=generator, requires_grad=True)
    weight = (torch.randn(VOCAB, 32, generator=generator) * 0.2).requires_grad_()
    targets = torch.randint(0, VOCAB, (3, 11), generator=generator)
    want, want_entropy = naive_token_logprobs(hidden, weight, targets, temperature=0.7)
    (want.sum() - 0.1 * want_entropy.sum()).backward()
    want_grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    got, entropy = token_logprobs(hidden, weight, targets, temperature=0.7, chunk_rows=4)
    (got.sum() - 0.1 * entropy.sum()).backward()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(entropy, want_entropy, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(hidden.grad, want_grads[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(weight.grad, want_grads[1], rtol=1e-4, atol=1e-6)


# -- presets --------------------------------------------------------------------------------------------------
PUBLISHED = {  # parameters (billions) from the Qwen3 model cards; total, without embeddings
    "qwen3-0.6b": (0.6, 0.44),
    "qwen3-1.7b": (1.7, 1.4),
    "qwen3-4b": (4.0, 3.6),
    "qwen3-8b": (8.2, 6.95),
    "qwen3-14b": (14.8, 13.2),
    "qwen3-30b-a3b": (30.5, 29.9),
}


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_and_its_architecture_has_the_published_size(preset):
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = validate(compose_train([f"model={preset}"]))
    assert cfg.model.path.startswith("Qwen/Qwen3-") and cfg.model.dtype == "bfloat16"
    assert list(cfg.model.generation_config["eos_token_id"]) == [IM_END_ID, ENDOFTEXT_ID]
    architecture = dict(cfg.model.architecture)
    config = AutoConfig.for_model(architecture.pop("model_type"), **architecture)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in model.parameters()) / 1e9
    embeddings = model.get_input_embeddings().weight.numel() * (1 if config.tie_word_embeddings else 2) / 1e9
    want_total, want_body = PUBLISHED[preset]
    assert total == pytest.approx(want_total, rel=0.02) and total - embeddings == pytest.approx(want_body, rel=0.02)


def test_random_init_builds_the_preset_offline_with_the_qwen_tokenizer(qwen_cache, monkeypatch):
    monkeypatch.setenv("RLPOST_CACHE", str(qwen_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    overrides = ["hidden_size=64", "intermediate_size=128", "num_hidden_layers=1", "num_attention_heads=2"]
    cfg = validate(
        compose_train(
            ["model=qwen3-0.6b", "model.init=random", "model.chat_template_kwargs.enable_thinking=false"]
            + [f"model.architecture.{o}" for o in overrides + ["num_key_value_heads=1", "head_dim=32"]]
        )
    )
    torch.manual_seed(0)
    model, tokenizer = load_model(cfg.model, dtype=torch.float32)
    assert model.config.vocab_size == VOCAB and model.config.hidden_size == 64
    assert model.get_output_embeddings().weight.shape == (VOCAB, 64)
    assert len(tokenizer) == 151669 and tokenizer.padding_side == "left"
    assert eos_token_ids(model, tokenizer) == (IM_END_ID, ENDOFTEXT_ID)
    assert dict(cfg.model.chat_template_kwargs) == {"enable_thinking": False}


def test_bad_model_settings_name_their_key(monkeypatch):
    with pytest.raises(ConfigError, match="model.init: 'scratch' is not one of"):
        validate(compose_train(["model.init=scratch"]))
    with pytest.raises(ConfigError, match="model.attn_implementation: 'flash' is not one of"):
        validate(compose_train(["model.attn_implementation=flash"]))
    with pytest.raises(ConfigError, match="model.architecture: needs model_type"):
        load_model(ModelConfig(init="random", architecture={"hidden_size": 8}))
    cfg = ModelConfig(name="hf", path="someone/some-model", init="random", architecture={"model_type": "llama"})
    with pytest.raises(ConfigError, match="model.tokenizer: model.init=random with the hub id"):
        load_model(cfg)
    from transformers.utils import is_flash_attn_2_available

    if not is_flash_attn_2_available():
        with pytest.raises(ConfigError, match="model.attn_implementation: flash_attention_2 needs the flash-attn"):
            load_model(ModelConfig(attn_implementation="flash_attention_2"))


def test_tiny_model_random_init_reads_its_local_architecture():
    torch.manual_seed(0)
    pretrained, _ = load_model(ModelConfig())
    torch.manual_seed(0)
    random, tokenizer = load_model(ModelConfig(init="random"))
    assert random.config.hidden_size == pretrained.config.hidden_size == 128
    assert not torch.equal(random.model.embed_tokens.weight, pretrained.model.embed_tokens.weight)
    assert eos_token_ids(random, tokenizer) == (tokenizer.eos_token_id,)


def test_preset_yaml_matches_the_schema():
    for preset in PRESETS:
        node = OmegaConf.load(f"conf/model/{preset}.yaml")
        assert set(node) <= set(ModelConfig.__dataclass_fields__), preset
