"""trainer.device / trainer.precision: resolution, fp32 masters under bf16-mixed, float32 log-probs and losses under
autocast, memory metrics, and the one-line CUDA out-of-memory stop (injected on the CPU)."""

from __future__ import annotations

import warnings

import pytest
import torch

from rlpost.algos import ALGOS, policy_loss
from rlpost.algos.common import Normalizer
from rlpost.config import ConfigError
from rlpost.engine.precision import (
    Precision,
    default_precision,
    memory_metrics,
    out_of_memory_message,
    resolve_device,
    resolve_precision,
)
from rlpost.engine.torch import TorchEngine, TorchEngineConfig
from rlpost.models import ModelConfig, load_model
from rlpost.ops.logprobs import naive_token_logprobs, token_logprobs
from tests.engine.test_torch_engine import _random_batch

CPU = torch.device("cpu")


def _engine(precision: str, **overrides) -> tuple[TorchEngine, object]:
    model, tokenizer = load_model(ModelConfig())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pure bf16 warns by design
        engine = TorchEngine(
            model,
            TorchEngineConfig(**overrides),
            total_steps=1,
            need_reference=False,
            precision=Precision(precision, CPU),
        )
    return engine, tokenizer


def _policy_loss(engine, batch):
    logprobs, entropy = engine.forward(batch)
    algo = ALGOS.get("grpo").schema()
    norm = Normalizer.of(batch.loss_mask, batch.group_index, 7.0, batch.advantages)
    loss, _ = policy_loss(
        algo,
        logprobs=logprobs,
        old_logprobs=logprobs.detach(),
        advantages=batch.advantages,
        mask=batch.loss_mask,
        norm=norm,
        group_index=batch.group_index,
        ref_logprobs=None,
        entropy=entropy,
        sampling_logprobs=batch.sampling_logprobs,
    )
    return logprobs, entropy, loss


def test_device_resolution_on_a_machine_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA (this one has a GPU: scripts/gpu_check.py covers it)")
    assert resolve_device("auto") == CPU and resolve_device("cpu") == CPU and resolve_device("CPU") == CPU
    for spec in ("cuda", "cuda:0"):
        with pytest.raises(ConfigError, match=r"trainer\.device: cuda.*trainer\.device=cpu or auto"):
            resolve_device(spec)
    with pytest.raises(ConfigError, match="trainer.device: 'tpu' is not one of"):
        resolve_device("tpu")
    with pytest.raises(ConfigError, match="device"):
        TorchEngineConfig(device="gpu0")


def test_precision_resolution():
    assert default_precision(CPU) == "fp32"  # today's CPU numbers by default
    assert default_precision(torch.device("cuda", 0)) == "bf16-mixed"
    assert resolve_precision("auto", CPU).name == "fp32"
    mixed = resolve_precision("bf16-mixed", CPU)
    assert (mixed.param_dtype, mixed.compute_dtype) == (torch.float32, torch.bfloat16)
    fp32 = resolve_precision("fp32", CPU)
    assert (fp32.param_dtype, fp32.compute_dtype) == (torch.float32, torch.float32)
    with pytest.warns(UserWarning, match="round away"):
        pure = resolve_precision("bf16", CPU)
    assert pure.param_dtype == torch.bfloat16
    for spec in ("fp16", "float16", "16-mixed"):
        with pytest.raises(ConfigError, match="trainer.precision: fp16 is not supported.*loss scaler"):
            resolve_precision(spec, CPU)
    with pytest.raises(ConfigError, match="precision: fp16 is not supported"):
        TorchEngineConfig(precision="fp16")
    with pytest.raises(ConfigError, match="'fp8' is not one of"):
        TorchEngineConfig(precision="fp8")


def test_autocast_follows_the_device_type():
    with Precision("bf16-mixed", CPU).autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert torch.nn.functional.linear(torch.ones(2, 4), torch.ones(3, 4)).dtype == torch.bfloat16
    for name in ("fp32", "bf16"):
        with Precision(name, CPU).autocast():
            assert not torch.is_autocast_enabled("cpu")


def test_small_update_moves_fp32_masters_and_rounds_away_in_pure_bf16():
    """Acceptance: an lr=1e-6 AdamW step (each element moves by ~1e-6) changes the float32 masters under
    bf16-mixed; under pure bf16 every weight of magnitude >= 2^-10 keeps its value (half its bf16 spacing is
    >= 2^-18 = 3.8e-6 > 1e-6), and those are nearly all weights."""
    moved = {}
    for name in ("bf16-mixed", "bf16"):
        engine, tokenizer = _engine(name, lr=1e-6, grad_clip=0.0)
        params = dict(engine.model.named_parameters())
        before = {key: p.detach().clone() for key, p in params.items()}
        batch = _random_batch(tokenizer)
        _, _, loss = _policy_loss(engine, batch)
        engine.backward(loss)
        assert all(p.grad is None or p.grad.dtype == engine.precision.param_dtype for p in params.values())
        engine.step()
        large = torch.cat([(before[k].abs() >= 2**-10).flatten() for k in params])
        changed = torch.cat([(params[k].detach() != before[k]).flatten() for k in params])
        moved[name] = (changed, large)
        state = engine.optimizer.state[params["model.norm.weight"]]
        assert state["exp_avg"].dtype == engine.precision.param_dtype  # AdamW state lives beside the masters
    changed, large = moved["bf16-mixed"]
    assert next(iter(_engine("bf16-mixed")[0].model.parameters())).dtype == torch.float32
    assert changed.float().mean() > 0.99
    changed, large = moved["bf16"]
    assert large.float().mean() > 0.95
    assert not changed[large].any()  # rounded away, every one of them
    assert changed.float().mean() < 0.05


def test_autocast_keeps_logprobs_entropy_and_loss_in_float32():
    mixed, tokenizer = _engine("bf16-mixed")
    fp32, _ = _engine("fp32")
    batch = _random_batch(tokenizer)
    logprobs, entropy, loss = _policy_loss(mixed, batch)
    assert logprobs.dtype == entropy.dtype == loss.dtype == torch.float32
    assert mixed.logprobs(batch).dtype == torch.float32
    reference = fp32.forward(batch)[0]
    mask = batch.response_mask
    assert not torch.equal(logprobs[mask], reference[mask])  # the matmuls really ran in bf16 ...
    torch.testing.assert_close(logprobs[mask], reference[mask], rtol=0.0, atol=0.1)  # ... close to fp32
    loss.backward()
    grads = [p.grad for p in mixed.model.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_chunked_logprobs_under_autocast_match_float32_with_float32_gradients():
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 5, 16, generator=generator, requires_grad=True)
    weight = (torch.randn(300, 16, generator=generator) * 0.3).requires_grad_()
    targets = torch.randint(0, 300, (2, 5), generator=generator)
    want, want_entropy = naive_token_logprobs(hidden, weight, targets)
    (want.sum() + want_entropy.sum()).backward()
    want_grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    with Precision("bf16-mixed", CPU).autocast():
        got, entropy = token_logprobs(hidden, weight, targets, chunk_rows=3)
    assert got.dtype == entropy.dtype == torch.float32
    (got.sum() + entropy.sum()).backward()  # backward outside autocast reuses the forward's bf16 compute
    assert hidden.grad.dtype == weight.grad.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0.0, atol=0.05)
    torch.testing.assert_close(entropy, want_entropy, rtol=0.0, atol=0.05)
    for grad, reference in zip((hidden.grad, weight.grad), want_grads):
        scale = float(reference.abs().max())
        torch.testing.assert_close(grad, reference, rtol=0.0, atol=0.03 * scale)
        assert not torch.equal(grad, reference)


def test_reference_model_equals_the_policy_before_the_first_update_under_bf16_mixed():
    model, tokenizer = load_model(ModelConfig())
    engine = TorchEngine(
        model, TorchEngineConfig(), total_steps=1, need_reference=True, precision=Precision("bf16-mixed", CPU)
    )
    assert next(engine.reference.parameters()).dtype == next(engine.model.parameters()).dtype == torch.float32
    batch = _random_batch(tokenizer)
    assert torch.equal(engine.logprobs(batch, reference=True), engine.logprobs(batch))  # KL exactly 0 at step 0


def test_memory_metrics_on_the_cpu():
    metrics = memory_metrics(CPU)
    assert set(metrics) == {"memory_rss_gb", "memory_rss_peak_gb"}  # torch.cuda is not read on the CPU
    assert 0.01 < metrics["memory_rss_gb"] <= metrics["memory_rss_peak_gb"] + 1e-3


def test_out_of_memory_message_is_one_line_with_the_keys():
    trainer = TorchEngineConfig(micro_batch_tokens=8192, gradient_checkpointing=False, logprob_chunk_rows=512)
    rollout = type("Rollout", (), {"batch_size": 64})()
    message = out_of_memory_message(7, "train", trainer, rollout, "/run/checkpoints/step_5")
    assert "\n" not in message
    for part in (
        "step 7, phase train",
        "trainer.micro_batch_tokens (now 8192",
        "trainer.gradient_checkpointing=true (now false)",
        "trainer.logprob_chunk_rows (now 512)",
        "rollout.batch_size (now 64)",
        "last good checkpoint: /run/checkpoints/step_5",
    ):
        assert part in message, part


@pytest.mark.slow
def test_cli_refuses_fp16_and_a_missing_gpu_with_one_line(tmp_path):
    from tests.conftest import run_train

    result = run_train("trainer.precision=fp16", run_dir=tmp_path / "fp16")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("rlpost-train: config error: trainer.precision: fp16")
    if torch.cuda.is_available():
        return
    result = run_train("trainer.device=cuda", "debug=fast", run_dir=tmp_path / "cuda")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("rlpost-train: config error: trainer.device: cuda requested"), last
    assert not (tmp_path / "cuda" / "metrics.jsonl").exists()
