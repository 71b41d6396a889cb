"""trainer=torch: one process on one device, plain PyTorch AdamW with warmup/decay and gradient clipping.

The engine never knows the algorithm: it turns a RolloutBatch into per-token log-probs (and entropy), takes a
loss's gradient, and steps the optimizer. It owns the device and the precision (rlpost/engine/precision.py): the
policy's weights are masters in `precision.param_dtype` (float32 unless trainer.precision=bf16), the forward
passes run under `precision.autocast()`, and log-probs come back in float32.
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from rlpost.batch import RolloutBatch
from rlpost.config import check, in_range
from rlpost.engine import ENGINES
from rlpost.engine.precision import Precision, check_precision, resolve_device, resolve_precision
from rlpost.ops.logprobs import token_logprobs

SCHEDULES = ("constant", "linear", "cosine")


@dataclass
class TorchEngineConfig:
    name: str = "torch"
    device: str = "auto"  # auto (CUDA when available, else CPU) | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16-mixed on CUDA, fp32 on CPU) | fp32 | bf16-mixed | bf16 (fp16 is refused)
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
    gradient_checkpointing: bool | None = None  # recompute activations in backward; null = the model preset's choice
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
        check_precision(self.precision, "precision")  # fp16 and unknown names fail here, before anything runs
        device = str(self.device).lower()
        check(
            device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit()),
            "device",
            f"{self.device!r} is not one of auto, cpu, cuda, cuda:N",
        )


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


def engine_precision(cfg: TorchEngineConfig) -> Precision:
    """The device and precision `cfg` asks for, checked against this machine (ConfigError naming the key)."""
    return resolve_precision(cfg.precision, resolve_device(cfg.device))


@ENGINES.register("torch", TorchEngineConfig)
class TorchEngine:
    lockstep = False  # True where every forward pass is a collective (ZeRO-3): ranks must run as many

    @staticmethod
    def loading_model(cfg, precision: Precision | None = None) -> contextlib.AbstractContextManager:
        """Context in which the trainer loads the model (ZeRO-3 partitions parameters as they load)."""
        return contextlib.nullcontext()

    # trainer.* keys that a resumed run may change: _apply_config (or each step) reads them from this config
    RESUME_KEYS = (
        "lr",
        "weight_decay",
        "beta1",
        "beta2",
        "adam_eps",
        "warmup_steps",
        "schedule",
        "min_lr_ratio",
        "grad_clip",
        "micro_batch_size",
        "micro_batch_tokens",
        "gradient_checkpointing",
        "share_prompt",
        "logprob_chunk_rows",
    )

    def __init__(
        self,
        model,
        cfg: TorchEngineConfig,
        *,
        total_steps: int,
        need_reference: bool,
        temperature: float = 1.0,
        precision: Precision | None = None,
    ) -> None:
        self.cfg, self.temperature = cfg, temperature
        self.precision = precision or engine_precision(cfg)
        self.device = self.precision.device
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        # masters in param_dtype on the device (no copy when the model was loaded that way)
        self.model = model.to(device=self.device, dtype=self.precision.param_dtype)
        self.reference = None
        if need_reference:
            # kept in the masters' dtype: its log-probs equal the policy's bit for bit before the first update. A bf16
            # copy would save 2 bytes/parameter but round the residual stream, which autocast keeps in float32
            # (up to 0.15 nats per token apart on the tiny model): a KL penalty that is not zero at step 0.
            self.reference = copy.deepcopy(model).eval().requires_grad_(False)
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        self.optimizer = torch.optim.AdamW(  # state in param_dtype: float32 next to float32 masters
            model.parameters(),
            lr=cfg.lr,
            betas=(cfg.beta1, cfg.beta2),
            eps=cfg.adam_eps,
            weight_decay=cfg.weight_decay,
            fused=True if self.device.type == "cuda" else None,  # one kernel for all parameters on GPUs
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, cfg.warmup_steps, total_steps, cfg.schedule, cfg.min_lr_ratio)
        )

    # -- log-probs ---------------------------------------------------------------------------------------
    def _logprobs(self, model, batch: RolloutBatch, with_entropy: bool) -> tuple[Tensor, Tensor]:
        with self.precision.autocast():
            hidden = self._response_hidden(model, batch)
            return self._head_logprobs(model, hidden, batch.response_ids, with_entropy)

    def _response_hidden(self, model, batch: RolloutBatch) -> Tensor:
        """[B, T, H] final hidden states; position t predicts response token t."""
        shared = self.cfg.share_prompt and not getattr(model, "is_gradient_checkpointing", False)
        response_hidden = _shared_prompt_hidden(model, batch) if shared else None
        if response_hidden is None:
            input_ids = torch.cat([batch.prompt_ids, batch.response_ids], dim=1)  # [B, P+T]
            attention = torch.cat([batch.prompt_mask, torch.ones_like(batch.response_mask)], dim=1).long()
            position_ids = (attention.cumsum(dim=1) - 1).clamp(min=0)
            hidden = model.model(input_ids=input_ids, attention_mask=attention, position_ids=position_ids)
            prompt_width = batch.prompt_ids.shape[1]
            response_hidden = hidden.last_hidden_state[:, prompt_width - 1 : -1]  # [B, T, H]: t predicts token t
        return response_hidden

    def _head_logprobs(self, model, hidden: Tensor, targets: Tensor, with_entropy: bool) -> tuple[Tensor, Tensor]:
        """([B, T] log-probs of `targets`, [B, T] entropy) from hidden states, chunk by chunk over the LM head."""
        return token_logprobs(
            hidden,
            model.get_output_embeddings().weight,
            targets,
            temperature=self.temperature,
            with_entropy=with_entropy,
            chunk_rows=self.cfg.logprob_chunk_rows,
        )

    @torch.no_grad()
    def logprobs(self, batch: RolloutBatch, reference: bool = False) -> Tensor:
        """[B, T] float32 log-probs of the sampled tokens under the current (or reference) weights, no grad.

        On the engine's device (the batch is moved there). Computed micro-batch by micro-batch (trimmed, possibly
        reordered by length) and scattered back to the batch's rows; columns past a micro-batch's longest response
        are 0.
        """
        model = self.reference if reference else self.model
        batch = batch.to(self.device)
        out = torch.zeros(batch.response_ids.shape, dtype=torch.float32, device=self.device)  # [B, T]
        for rows in batch.micro_batch_rows(self.cfg.micro_batch_size, self.cfg.micro_batch_tokens):
            micro = batch.select(rows).trim_padding()
            values = self._logprobs(model, micro, with_entropy=False)[0]  # [b, t <= T]
            out[rows, : values.shape[1]] = values
        return out

    def forward(self, batch: RolloutBatch, entropy_grad: bool = False) -> tuple[Tensor, Tensor]:
        """([B, T] float32 log-probs with grad, [B, T] float32 entropy; with grad only when `entropy_grad`).

        The batch must be on the engine's device (the trainer moves it once per step: the loss reads it too).
        """
        logprobs, entropy = self._logprobs(self.model, batch, with_entropy=True)
        return logprobs, entropy if entropy_grad else entropy.detach()

    # -- update -----------------------------------------------------------------------------------------
    def backward(self, loss: Tensor, boundary: bool = True) -> None:
        """Accumulate the gradient of `loss`; `boundary` marks a minibatch's last micro-batch (unused here)."""
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

    @staticmethod
    def check_checkpoint(directory: Path, world_size: int = 1) -> None:
        """What a resume checks before any model is loaded: the weight files' headers cover them and optimizer.pt
        is a whole archive (CheckpointError naming the file). Shapes against this model are checked by `load`."""
        from rlpost.checkpoint import check_archive, check_weight_files

        check_weight_files(directory)
        check_archive(directory / "optimizer.pt")

    def load(self, directory: Path) -> None:
        """Restore weights, optimizer and scheduler from `directory`, all or nothing.

        Every file is read and checked against this model and optimizer first (CheckpointError naming the file);
        only then is anything applied. The optimizer's hyperparameters and the lr schedule are then re-derived
        from this engine's config (see RESUME_KEYS), so a resumed run trains with the values it records.
        """
        from rlpost.checkpoint import CheckpointError, read_torch

        weights = _read_weights(directory)
        expected = self.model.state_dict()
        tied = getattr(self.model.config, "tie_word_embeddings", False)
        for name, tensor in expected.items():
            if name not in weights and not (tied and "lm_head" in name):
                raise CheckpointError(f"{directory}: model weight {name} missing (another model?)")
            if name in weights and weights[name].shape != tensor.shape:
                raise CheckpointError(
                    f"{directory}: model weight {name} has shape {tuple(weights[name].shape)}, this model's is "
                    f"{tuple(tensor.shape)} (another model?)"
                )
        unexpected = sorted(set(weights) - set(expected))
        if unexpected:
            raise CheckpointError(f"{directory}: unexpected model weights {unexpected[:3]} (another model?)")
        states = read_torch(directory / "optimizer.pt")
        problem = _optimizer_mismatch(states, self.optimizer)
        if problem:
            raise CheckpointError(f"{directory / 'optimizer.pt'}: {problem}")
        # nothing below can fail on what was checked above
        self.model.load_state_dict(weights, strict=False)
        if tied:
            self.model.tie_weights()
        self.optimizer.load_state_dict(states["optimizer"])
        self.scheduler.load_state_dict(states["scheduler"])
        self._apply_config()

    def _apply_config(self) -> None:
        """Re-derive AdamW's hyperparameters and the scheduled lr from self.cfg over the restored moments and step.

        LambdaLR restores `base_lrs` (the old peak lr) from its state dict and the optimizer restores each group's
        lr, betas, eps and weight decay: without this a new trainer.lr would be recorded but never used.
        """
        cfg = self.cfg
        factor = self.scheduler.lr_lambdas[0](self.scheduler.last_epoch)
        for group in self.optimizer.param_groups:
            group.update(
                initial_lr=cfg.lr,
                lr=cfg.lr * factor,
                betas=(cfg.beta1, cfg.beta2),
                eps=cfg.adam_eps,
                weight_decay=cfg.weight_decay,
            )
        self.scheduler.base_lrs = [cfg.lr for _ in self.optimizer.param_groups]
        self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]


def _read_weights(directory: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    from rlpost.checkpoint import CheckpointError

    shards = sorted(directory.glob("*.safetensors"))
    if not shards:
        raise CheckpointError(f"{directory}: no *.safetensors model weights")
    weights: dict[str, Tensor] = {}
    for shard in shards:
        try:
            weights.update(load_file(shard))
        except Exception as error:  # truncated or overwritten file: safetensors' header or sizes do not add up
            raise CheckpointError(f"{shard}: unreadable ({' '.join(str(error).split())[:200]})") from None
    return weights


def _optimizer_mismatch(states: dict, optimizer: torch.optim.Optimizer) -> str | None:
    """Why `states` cannot restore `optimizer` (other parameter count or shapes); None when it fits."""
    if not {"optimizer", "scheduler"} <= set(states):
        return "missing 'optimizer' or 'scheduler'"
    saved = states["optimizer"]
    if not isinstance(saved, dict) or not {"state", "param_groups"} <= set(saved):
        return "not an optimizer state dict"
    groups = optimizer.param_groups
    if [len(g["params"]) for g in saved["param_groups"]] != [len(g["params"]) for g in groups]:
        return "parameter groups differ from this model's (another model?)"
    params = [p for group in groups for p in group["params"]]
    for index, state in saved["state"].items():
        if not isinstance(index, int) or not 0 <= index < len(params):
            return f"state for unknown parameter {index}"
        for key in ("exp_avg", "exp_avg_sq"):
            found, expected = tuple(state.get(key, params[index]).shape), tuple(params[index].shape)
            if found != expected:
                return f"{key} of parameter {index} has shape {found}, expected {expected} (another model?)"
    if not isinstance(states["scheduler"], dict) or "last_epoch" not in states["scheduler"]:
        return "not a scheduler state dict"
    return None
