"""trainer=deepspeed_zero2 / deepspeed_zero3: W processes, DeepSpeed ZeRO stage 2 or 3, same interface as torch.

Each rank holds whole groups of the global batch (rlpost.distributed); the loss it returns is its share of the
minibatch loss over the minibatch's global denominators, so the sum over ranks is the one-process loss. DeepSpeed
averages gradients over ranks, so `backward` scales by W. The DeepSpeed config is generated from the trainer
config (`ds_config`); nothing is hand-written JSON.

ZeRO-3 shards the parameters: the model is built under `deepspeed.zero.Init`, every rank runs the same number of
forward passes (the trainer pads micro-batch counts, the rollout pads shards), the LM head used by the chunked
log-prob op is gathered for the op, and weights leave the engine (rollout sync, HF export) one parameter chunk at
a time.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from rlpost import distributed
from rlpost.config import ConfigError, check
from rlpost.engine import ENGINES
from rlpost.engine.precision import Precision
from rlpost.engine.torch import TorchEngine, TorchEngineConfig, engine_precision, lr_factor

STAGES = (2, 3)


@dataclass
class DeepSpeedEngineConfig(TorchEngineConfig):
    name: str = "deepspeed"
    stage: int = 2  # ZeRO stage: 2 shards gradients and optimizer state, 3 also the parameters
    nproc_per_node: int = 1  # processes `rlpost-train` starts on this node (torch's elastic launcher)
    offload_optimizer: bool = False  # AdamW state and fp32 masters in CPU memory (DeepSpeedCPUAdam)
    offload_params: bool = False  # ZeRO-3 only: parameters in CPU memory between uses
    sync_chunk_params: int = 64  # ZeRO-3: parameters gathered at once for rollout sync and HF export

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.stage in STAGES, "stage", f"{self.stage} is not one of 2, 3")
        check(self.nproc_per_node >= 1, "nproc_per_node", f"must be >= 1, got {self.nproc_per_node}")
        check(
            not self.offload_params or self.stage == 3,
            "offload_params",
            "parameter offload needs ZeRO stage 3 (trainer=deepspeed_zero3_offload)",
        )
        check(self.sync_chunk_params >= 1, "sync_chunk_params", f"must be >= 1, got {self.sync_chunk_params}")


def ds_config(cfg: DeepSpeedEngineConfig, precision: str = "fp32") -> dict:
    """The DeepSpeed config for `cfg`: one micro-batch per backward, accumulation boundaries set by the trainer."""
    zero: dict = {"stage": cfg.stage, "overlap_comm": False, "contiguous_gradients": True}
    if cfg.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    if cfg.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    if cfg.stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = False  # rlpost exports HF weights itself, in chunks
    return {
        "train_micro_batch_size_per_gpu": 1,  # rlpost packs its own micro-batches; DeepSpeed never splits them
        "gradient_accumulation_steps": 1,  # boundaries are set per backward (see DeepSpeedEngine.backward)
        "gradient_clipping": cfg.grad_clip if cfg.grad_clip > 0 else 0.0,
        # bf16 weights and compute, fp32 masters in the ZeRO optimizer; a non-finite global grad norm skips the step
        "bf16": {"enabled": precision != "fp32", "check_grad_overflow": True},
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }


def module_head_logprobs(
    head: torch.nn.Module, hidden: Tensor, targets: Tensor, temperature: float, with_entropy: bool, chunk_rows: int
) -> tuple[Tensor, Tensor]:
    """([B, T] log p(targets), [B, T] entropy) calling the `head` module on chunks of rows.

    Under ZeRO-3 a parameter is whole only inside its module's forward (and again for its backward), so the head
    is called as a module, never read as a tensor. Each chunk is recomputed in backward (activation checkpoint),
    so at most one chunk's [rows, V] logits live at a time, as in rlpost.ops.logprobs.token_logprobs.
    """
    from torch.utils.checkpoint import checkpoint

    from rlpost.ops.logprobs import MAX_CHUNK_ELEMENTS

    vocab = head.out_features
    chunk_rows = max(1, min(chunk_rows, MAX_CHUNK_ELEMENTS // vocab))
    flat_hidden, flat_targets = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1).long()  # [N, H], [N]

    def chunk(part_hidden: Tensor, part_targets: Tensor) -> tuple[Tensor, Tensor]:
        log_probs = (head(part_hidden).float() / temperature).log_softmax(dim=-1)  # [n, V]
        picked = log_probs.gather(-1, part_targets[:, None]).squeeze(-1)  # [n]
        entropy = -(log_probs.exp() * log_probs).sum(dim=-1) if with_entropy else torch.zeros_like(picked)
        return picked, entropy

    outputs = []
    for start in range(0, max(len(flat_targets), 1), chunk_rows):
        part = slice(start, start + chunk_rows)
        if torch.is_grad_enabled():
            outputs.append(checkpoint(chunk, flat_hidden[part], flat_targets[part], use_reentrant=False))
        else:
            outputs.append(chunk(flat_hidden[part], flat_targets[part]))
    logprobs = torch.cat([o[0] for o in outputs]).reshape(targets.shape)
    entropy = torch.cat([o[1] for o in outputs]).reshape(targets.shape)
    return logprobs, entropy


@contextlib.contextmanager
def _quiet():
    """DeepSpeed's start-up chatter (config dumps, op builds logged at INFO) kept off the run's console."""
    from deepspeed.utils import logger as ds_logger

    root, previous = logging.getLogger(), (logging.getLogger().level, ds_logger.level)
    root.setLevel(logging.WARNING)
    ds_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.setLevel(previous[0])
        ds_logger.setLevel(previous[1])


def _load_again(model):
    from transformers import AutoModelForCausalLM

    path = model.config._name_or_path
    if not path or not Path(path).is_dir():
        raise ConfigError(
            f"trainer.stage: ZeRO-3 with algo.kl_coef > 0 loads the reference model again, but {path!r} is no local dir"
        )
    return AutoModelForCausalLM.from_pretrained(path, dtype=model.dtype)


@ENGINES.register("deepspeed", DeepSpeedEngineConfig)
class DeepSpeedEngine(TorchEngine):
    """ZeRO-2/3 over the ranks of the process group; log-prob and forward code is trainer=torch's."""

    # trainer.* keys a resumed run may change (the rest are refused): none that DeepSpeed's restored state holds
    RESUME_KEYS = ("micro_batch_size", "micro_batch_tokens", "logprob_chunk_rows", "sync_chunk_params")
    _hf_deepspeed_config = None  # transformers reads ZeRO-3 settings from this object while it is alive

    @staticmethod
    @contextlib.contextmanager
    def loading_model(cfg: DeepSpeedEngineConfig, precision: Precision | None = None):
        """Under ZeRO-3, from_pretrained builds the model inside deepspeed.zero.Init: each rank holds a shard."""
        precision = precision or engine_precision(cfg)
        os.environ.setdefault("DS_ACCELERATOR", precision.device.type)
        distributed.init(precision.device, single=True)
        import deepspeed

        deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")  # wraps our group
        if cfg.stage == 3:
            from transformers.integrations import HfDeepSpeedConfig

            config = ds_config(cfg, precision.name)
            DeepSpeedEngine._hf_deepspeed_config = HfDeepSpeedConfig(config)
        yield

    def __init__(
        self,
        model,
        cfg: DeepSpeedEngineConfig,
        *,
        total_steps: int,
        need_reference: bool,
        temperature: float = 1.0,
        precision: Precision | None = None,
    ) -> None:
        import deepspeed

        if cfg.stage == 3:  # a prompt-sharing forward runs twice or once depending on the rows: not in lockstep
            cfg = dataclasses.replace(cfg, share_prompt=False)
        self.cfg, self.temperature, self.lockstep = cfg, temperature, cfg.stage == 3
        self.precision = precision or engine_precision(cfg)
        self.device = self.precision.device
        self.world = distributed.world_size()
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        optimizer = self._optimizer(model, cfg)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: lr_factor(s, cfg.warmup_steps, total_steps, cfg.schedule, cfg.min_lr_ratio)
        )
        reference = None
        if need_reference:  # ZeRO-3 parameters cannot be deep-copied: load the reference (sharded) again
            reference = _load_again(model) if cfg.stage == 3 else copy.deepcopy(model)
            reference.eval().requires_grad_(False)
        config = ds_config(cfg, self.precision.name)
        with _quiet():
            self.ds, self.optimizer, _, self.scheduler = deepspeed.initialize(
                model=model, optimizer=optimizer, lr_scheduler=scheduler, config=config
            )
        self.model = self.ds.module
        self.reference = None
        if reference is not None and cfg.stage == 3:  # sharded like the policy
            inference = {k: v for k, v in config.items() if k != "gradient_clipping"}
            self.reference = deepspeed.initialize(model=reference, config=inference)[0].module
        elif reference is not None:
            self.reference = reference
        self._micro = 0

    @staticmethod
    def _optimizer(model, cfg: DeepSpeedEngineConfig):
        params = [p for p in model.parameters() if p.requires_grad]
        kwargs = {"lr": cfg.lr, "betas": (cfg.beta1, cfg.beta2), "eps": cfg.adam_eps, "weight_decay": cfg.weight_decay}
        if cfg.offload_optimizer:
            from deepspeed.ops.adam import DeepSpeedCPUAdam

            return DeepSpeedCPUAdam(params, adamw_mode=True, **kwargs)
        return torch.optim.AdamW(params, **kwargs)

    # -- log-probs: under ZeRO-3 the LM head runs as a module, so DeepSpeed gathers its weight ----------------
    def _head_logprobs(self, model, hidden: Tensor, targets: Tensor, with_entropy: bool) -> tuple[Tensor, Tensor]:
        if self.cfg.stage != 3:
            return super()._head_logprobs(model, hidden, targets, with_entropy)
        return module_head_logprobs(
            model.get_output_embeddings(), hidden, targets, self.temperature, with_entropy, self.cfg.logprob_chunk_rows
        )

    def forward(self, batch, entropy_grad: bool = False) -> tuple[Tensor, Tensor]:
        # What DeepSpeedEngine.forward does first: ZeRO-3 counts micro-steps here (accumulate vs. overwrite the
        # gradient partitions). rlpost calls the module's parts directly, so it is done by hand.
        self.ds.optimizer.clear_backward_seen_flag()
        return super().forward(batch, entropy_grad=entropy_grad)

    # -- update -----------------------------------------------------------------------------------------
    def backward(self, loss: Tensor, boundary: bool = True) -> None:
        """Accumulate; `boundary` marks the minibatch's last micro-batch (DeepSpeed reduces there)."""
        self.ds.set_gradient_accumulation_boundary(boundary)
        self.ds.backward(loss * self.world, scale_wrt_gas=False)  # DeepSpeed averages over ranks; we want the sum

    def step(self, skip: bool = False) -> dict[str, float]:
        """Clip, step, schedule; `skip` (decided identically on every rank) or a non-finite gradient drops the update.

        A finite loss can still give an inf/NaN gradient (an overflow in backward, on one rank only). The ZeRO
        optimizer takes the global norm of the reduced, partitioned gradients (all-reduced, so every rank sees the
        same value) before it steps and drops the step when that norm is not finite: no weight or AdamW moment
        changes (ds_config keeps that check on under bf16 too). DeepSpeed then leaves the lr schedule where it was;
        it is advanced here, as trainer=torch does for a skipped update, so both engines keep the same schedule.
        """
        lr = self.optimizer.param_groups[0]["lr"]
        if skip:
            self.ds.optimizer.zero_grad()
            self.scheduler.step()
            return {"grad_norm": float("nan"), "lr": lr, "skipped_update": 1.0}
        self.ds.set_gradient_accumulation_boundary(True)
        self.ds.step()
        grad_norm = self.ds.get_global_grad_norm()
        grad_norm = float(grad_norm) if grad_norm is not None else float("nan")
        skipped = not self.ds.was_step_applied()
        if skipped:
            self.scheduler.step()
        return {"grad_norm": grad_norm, "lr": lr, "skipped_update": float(skipped)}

    # -- weights out: rollout sync and HF export ----------------------------------------------------------
    def named_tensors(self) -> Iterator[tuple[str, Tensor]]:
        """(name, full tensor) for every entry of the model's state dict; under ZeRO-3 gathered `sync_chunk_params`
        parameters at a time, then the persistent buffers (non-persistent ones such as the rotary inv_freq are not
        weights: vLLM's loader and the HF export know no such names)."""
        if self.cfg.stage != 3:
            yield from self.model.state_dict().items()
            return
        import deepspeed

        # tied weights under each of their names, as in a state dict: vLLM's layer-wise reload fills its LM head
        # only from `lm_head.weight` (without it the head keeps the weights the engine started with)
        named = list(self.model.named_parameters(remove_duplicate=False))
        for start in range(0, len(named), self.cfg.sync_chunk_params):
            chunk = named[start : start + self.cfg.sync_chunk_params]
            params = list({id(param): param for _, param in chunk}.values())  # a tied parameter gathered once
            with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
                for name, param in chunk:
                    yield name, param.detach().clone()
        for name, buffer in self.model.named_buffers():
            owner, _, leaf = name.rpartition(".")
            if leaf not in self.model.get_submodule(owner)._non_persistent_buffers_set:
                yield name, buffer

    # -- checkpoint (collective: every rank calls save/load) ---------------------------------------------
    def save(self, directory: Path, tokenizer=None) -> None:
        """DeepSpeed's sharded state (exact resume) in directory/deepspeed, plus an HF export from rank 0."""
        self.ds.save_checkpoint(str(directory / "deepspeed"), tag="state", save_latest=False)
        state = {name: tensor.cpu() for name, tensor in self.named_tensors()}  # every rank joins the gathers
        if distributed.is_main():
            self.model.save_pretrained(directory, state_dict=state, safe_serialization=True)
            if tokenizer is not None:
                tokenizer.save_pretrained(directory)
            (directory / "deepspeed_world_size").write_text(f"{self.world}\n")
        distributed.barrier()

    @staticmethod
    def check_checkpoint(directory: Path, world_size: int = 1) -> None:
        """What a resume checks before any model is loaded: written by trainer=deepspeed with `world_size` ranks
        (ZeRO shards are per rank), its DeepSpeed state and HF export there (ConfigError / CheckpointError)."""
        from rlpost.checkpoint import CheckpointError, check_weight_files

        saved = directory / "deepspeed_world_size"
        if not saved.is_file():
            raise ConfigError(f"resume: {directory} was not written by trainer=deepspeed (no deepspeed_world_size)")
        try:
            world = int(saved.read_text())
        except (OSError, ValueError):
            raise CheckpointError(f"{saved}: unreadable (not a number of processes)") from None
        if world != world_size:
            raise ConfigError(
                f"resume: {directory} was written by {world} processes, this run has {world_size}; "
                f"resume with trainer.nproc_per_node={world} (ZeRO shards are per rank)"
            )
        if not (directory / "deepspeed" / "state").is_dir():
            raise CheckpointError(f"{directory / 'deepspeed' / 'state'}: missing")
        check_weight_files(directory)

    def load(self, directory: Path) -> None:
        self.check_checkpoint(directory, self.world)
        path, _ = self.ds.load_checkpoint(
            str(directory / "deepspeed"), tag="state", load_optimizer_states=True, load_lr_scheduler_states=True
        )
        if path is None:
            raise ConfigError(f"resume: cannot load DeepSpeed state from {directory / 'deepspeed'}")
