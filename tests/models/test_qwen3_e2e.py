"""rlpost-train end to end with a Qwen3 preset built offline (model.init=random, shrunk) under bf16-mixed on the CPU:
the real vocabulary, Qwen3's chat template with thinking off, both EOS ids, memory metrics in metrics.jsonl."""

from __future__ import annotations

import math

import pytest

from tests.conftest import read_jsonl, run_train
from tests.models.conftest import SHRUNK

pytestmark = pytest.mark.slow


def test_random_qwen3_preset_trains_under_bf16_mixed(tmp_path, qwen_cache, qwen_tokenizer):
    run_dir = tmp_path / "run"
    result = run_train(
        "model=qwen3-0.6b",
        "model.init=random",
        "model.chat_template_kwargs.enable_thinking=false",
        *SHRUNK,
        "trainer.precision=bf16-mixed",
        "trainer.device=cpu",
        "algo.kl_coef=0.01",
        "debug=fast",
        "rollout.max_new_tokens=6",
        run_dir=run_dir,
        env={"RLPOST_CACHE": str(qwen_cache), "HF_HUB_OFFLINE": "1"},
        check=True,
    )
    assert "run dir" in result.stderr
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [0, 1, 2, 3]
    for record in metrics[1:]:
        assert math.isfinite(record["loss"]) and record["skipped_update"] == 0
        assert record["memory_rss_gb"] > 0 and record["memory_rss_peak_gb"] >= record["memory_rss_gb"]
        assert "memory_cuda_peak_gb" not in record  # CPU run: torch.cuda is not read
        assert 1 <= record["response_length"] <= 6
    samples = read_jsonl(run_dir / "samples.jsonl")
    assert samples and all("<|im_end|>" not in s["completion"] for s in samples)
    checkpoint = run_dir / "checkpoints" / "step_3"
    from transformers import AutoConfig, GenerationConfig

    assert AutoConfig.from_pretrained(checkpoint).vocab_size == 151936
    assert GenerationConfig.from_pretrained(checkpoint).eos_token_id == [151645, 151643]
    saved = qwen_tokenizer.__class__.from_pretrained(checkpoint)
    prompt = saved.apply_chat_template(
        [{"role": "user", "content": "What is 2+2?"}], add_generation_prompt=True, tokenize=False, enable_thinking=False
    )
    assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
