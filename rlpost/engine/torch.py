"""trainer=torch: one process, plain PyTorch AdamW with warmup/decay and gradient clipping.

The engine never knows the algorithm: it turns a RolloutBatch into per-token log-probs (and entropy), takes a
loss's gradient, and steps the optimizer.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from rlpost.batch import RolloutBatch
from rlpost.config import check, in_range
from rlpost.engine import ENGINES
from rlpost.ops.logprobs import token_logprobs

SCHEDULES = ("constant", "linear", "cosine")


@dataclass
class TorchEngineConfig:
    name: str = "torch"
    lr: float = 1e-4  # AdamW learning rate (peak, after warmup)
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    adam_eps: float = 1e-8
    warmup_steps: int = 0  # linear warmup from 0 to lr
    schedule: str = "constant"  # after warmup: constant | linear | cosine decay to min_lr_ratio * lr
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0  # max global grad norm; 0 = off
    micro_batch_size: int = 128  # sequences per forward/backward (gradient accumulation inside a minibatch)
    micro_batch_tokens: int = 0  # padded tokens per forward/backward, length-bucketed; 0 = use micro_batch_size
    gradient_checkpointing: bool = False
    share_prompt: bool = True  # run each group's prompt once and let its completions attend to the cached keys
    logprob_chunk_rows: int = 2048  # tokens per LM-head chunk in the log-prob computation

    def __post_init__(self) -> None:
        in_range(self.lr, "lr", 0.0, 1.0, low_open=True)
        for key in ("beta1", "beta2"):  # AdamW's moment decays: 1.0 would never forget, and divide by 1 - 1
            check(0.0 <= getattr(self, key) < 1.0, key, f"must be in [0, 1), got {getattr(self, key)}")
        check(self.adam_eps > 0, "adam_eps", f"must be > 0, got {self.adam_eps}")
        check(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        check(self.schedule in SCHEDULES, "schedule", f"{self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        in_range(self.min_lr_ratio, "min_lr_ratio", 0.0, 1.0)
        check(self.grad_clip >= 0, "grad_clip", f"must be >= 0, got {self.grad_clip}")
        check(self.micro_batch_size >= 1, "micro_batch_size", f"must be >= 1, got {self.micro_batch_size}")
        check(
            self.micro_batch_tokens >= 0, "micro_batch_tokens", f"must be >= 0 (0 = off), got {self.micro_batch_tokens}"
        )
        check(self.warmup_steps >= 0, "warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        check(self.logprob_chunk_rows >= 1, "logprob_chunk_rows", f"must be >= 1, got {self.logprob_chunk_rows}")


def _shared_prompt_hidden(model, batch: RolloutBatch) -> Tensor | None:
    """[B, T, H] hidden states that predict each response token, running each group's prompt once.

    The G completions of a group share one prompt: its forward pass (and, in backward, its gradient, summed over
    the group) is computed once and the completions attend to its cached keys and values. Same numbers as the
    concatenated forward up to float rounding; None when a group's rows do not share their prompt or nothing is
    shared.
    """
    from transformers import DynamicCache

    groups, inverse = torch.unique(batch.group_index, return_inverse=True)  # inverse [B]: row -> group slot
    if len(groups) == len(batch):
        return None
    rows = torch.arange(len(batch), device=inverse.device)
    first = torch.full((len(groups),), len(batch), device=inverse.device).scatter_reduce(0, inverse, rows, "amin")
    prompt_ids, prompt_mask = batch.prompt_ids[first], batch.prompt_mask[first]  # [G, P]
    if not (
        torch.equal(prompt_ids[inverse], batch.prompt_ids) and torch.equal(prompt_mask[inverse], batch.prompt_mask)
    ):
        return None
    prompt_out = model.model(
        input_ids=prompt_ids,
        attention_mask=prompt_mask.long(),
        position_ids=(prompt_mask.long().cumsum(dim=1) - 1).clamp(min=0),
        use_cache=True,
    )
    cache = DynamicCache(
        ddp_cache_data=[(layer.keys[inverse], layer.values[inverse]) for layer in prompt_out.past_key_values.layers]
    )
    response_width = batch.response_ids.shape[1]
    attention = torch.cat([batch.prompt_mask, torch.ones_like(batch.response_mask)], dim=1).long()  # [B, P+T]
    positions = batch.prompt_mask.sum(dim=1, keepdim=True) + torch.arange(response_width, device=attention.device)
    response_out = model.model(
        input_ids=batch.response_ids, attention_mask=attention, position_ids=positions, past_key_values=cache
    )
    last_prompt = prompt_out.last_hidden_state[:, -1][inverse]  # [B, H]: left-padded, so the real last token
    return torch.cat([last_prompt[:, None], response_out.last_hidden_state[:, :-1]], dim=1)  # [B, T, H]


def lr_factor(step: int, warmup: int, total: int, schedule: str, min_ratio: float) -> float:
    """Multiplier of the peak lr at optimizer step `step` (0-based)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    decay = 1.0 - progress if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return min_ratio + (1.0 - min_ratio) * decay


@ENGINES.register("torch", TorchEngineConfig)
class TorchEngine:
    def __init__(
        self, model, cfg: TorchEngineConfig, *, total_steps: int, need_reference: bool, temperature: float = 1.0
    ) -> None:
        self.model, self.cfg, self.temperature = model, cfg, temperature
        self.reference = copy.deepcopy(model).eval().requires_grad_(False) if need_reference else None
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps, weight_decay=cfg.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, cfg.warmup_steps, total_steps, cfg.schedule, cfg.min_lr_ratio)
        )

    # -- log-probs ---------------------------------------------------------------------------------------
    def _logprobs(self, model, batch: RolloutBatch, with_entropy: bool) -> tuple[Tensor, Tensor]:
        shared = self.cfg.share_prompt and not getattr(model, "is_gradient_checkpointing", False)
        response_hidden = _shared_prompt_hidden(model, batch) if shared else None
        if response_hidden is None:
            input_ids = torch.cat([batch.prompt_ids, batch.response_ids], dim=1)  # [B, P+T]
            attention = torch.cat([batch.prompt_mask, torch.ones_like(batch.response_mask)], dim=1).long()
            position_ids = (attention.cumsum(dim=1) - 1).clamp(min=0)
            hidden = model.model(input_ids=input_ids, attention_mask=attention, position_ids=position_ids)
            prompt_width = batch.prompt_ids.shape[1]
            response_hidden = hidden.last_hidden_state[:, prompt_width - 1 : -1]  # [B, T, H]: t predicts token t
        return token_logprobs(
            response_hidden,
            model.get_output_embeddings().weight,
            batch.response_ids,
            temperature=self.temperature,
            with_entropy=with_entropy,
            chunk_rows=self.cfg.logprob_chunk_rows,
        )

    @torch.no_grad()
    def logprobs(self, batch: RolloutBatch, reference: bool = False) -> Tensor:
        """[B, T] log-probs of the sampled tokens under the current (or reference) weights, no grad.

        Computed micro-batch by micro-batch (trimmed, possibly reordered by length) and scattered back to the
        batch's rows; columns past a micro-batch's longest response are 0.
        """
        model = self.reference if reference else self.model
        out = torch.zeros(batch.response_ids.shape, dtype=torch.float32, device=batch.response_ids.device)  # [B, T]
        for rows in batch.micro_batch_rows(self.cfg.micro_batch_size, self.cfg.micro_batch_tokens):
            micro = batch.select(rows).trim_padding()
            values = self._logprobs(model, micro, with_entropy=False)[0]  # [b, t <= T]
            out[rows, : values.shape[1]] = values
        return out

    def forward(self, batch: RolloutBatch, entropy_grad: bool = False) -> tuple[Tensor, Tensor]:
        """([B, T] log-probs with grad, [B, T] entropy; with grad only when `entropy_grad`)."""
        logprobs, entropy = self._logprobs(self.model, batch, with_entropy=True)
        return logprobs, entropy if entropy_grad else entropy.detach()

    # -- update -----------------------------------------------------------------------------------------
    def backward(self, loss: Tensor) -> None:
        loss.backward()

    def step(self, skip: bool = False) -> dict[str, float]:
        """Clip, step, schedule; `skip` or a non-finite gradient drops the update. Returns grad_norm, lr, skipped."""
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")
        grad_norm = float("nan") if skip else float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))
        lr = self.optimizer.param_groups[0]["lr"]
        skipped = skip or not math.isfinite(grad_norm)
        if not skipped:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return {"grad_norm": grad_norm, "lr": lr, "skipped_update": float(skipped)}

    def named_tensors(self):
        return self.model.state_dict().items()

    # -- checkpoint -------------------------------------------------------------------------------------
    def save(self, directory: Path, tokenizer=None) -> None:
        self.model.save_pretrained(directory, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)
        torch.save(
            {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()},
            directory / "optimizer.pt",
        )

    def load(self, directory: Path) -> None:
        from safetensors.torch import load_file

        state = {}
        for shard in sorted(directory.glob("*.safetensors")):
            state.update(load_file(shard))
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        tied = {name for name in missing if "lm_head" in name}
        if set(missing) - tied or unexpected:
            raise ValueError(f"checkpoint {directory}: missing {sorted(set(missing) - tied)}, unexpected {unexpected}")
        if getattr(self.model.config, "tie_word_embeddings", False):
            self.model.tie_weights()
        states = torch.load(directory / "optimizer.pt", weights_only=True)
        self.optimizer.load_state_dict(states["optimizer"])
        self.scheduler.load_state_dict(states["scheduler"])
