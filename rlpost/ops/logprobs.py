"""Log-probs and entropy of sampled tokens from final hidden states, one chunk of rows at a time.

The full [tokens x vocab] float32 logits never exist at once: the forward pass applies the LM head to a chunk
of rows, takes the log-softmax statistics, gathers the sampled token and the entropy, and drops the chunk; the
backward pass recomputes each chunk's logits and forms the gradient w.r.t. the hidden states and the LM-head
weight from closed forms, so peak memory is O(chunk_rows x vocab) instead of O(tokens x vocab).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _chunk_logits(hidden: Tensor, weight: Tensor, temperature: float) -> Tensor:
    """[n, V] float32 logits / temperature; the matmul runs in `weight`'s dtype (the compute dtype)."""
    logits = F.linear(hidden.to(weight.dtype), weight).float()
    return logits / temperature if temperature != 1.0 else logits


def compute_dtype(weight: Tensor) -> torch.dtype:
    """bf16 (or whatever autocast says) inside an autocast region on the weight's device, else the weight's dtype."""
    device_type = weight.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return weight.dtype


class _ChunkedTokenLogprobs(torch.autograd.Function):
    """(hidden [N, H], weight [V, H], targets [N]) -> (log p(target) [N], entropy [N]) in float32.

    With z = logits / temperature, p = softmax(z), lse = logsumexp(z), H = lse - sum_v p_v z_v:
        d log p_y / dz = onehot(y) - p
        d H / dz       = -p * (log p + H)
    so the upstream gradients (g_logp, g_ent) give dz = g_logp * onehot(y) - p * (g_logp + g_ent * (log p + H)),
    and d logits = dz / temperature; d hidden = d logits @ W, d W = d logits^T @ hidden, chunk by chunk.
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, temperature, chunk_rows, with_entropy):
        rows = targets.shape[0]
        dtype = compute_dtype(weight)
        head = weight.to(dtype)  # one cast per call, not one per chunk
        logprobs = torch.empty(rows, dtype=torch.float32, device=hidden.device)  # [N]
        entropy = torch.zeros(rows, dtype=torch.float32, device=hidden.device)  # [N]
        for start in range(0, rows, chunk_rows):
            part = slice(start, start + chunk_rows)
            logits = _chunk_logits(hidden[part], head, temperature)  # [n, V]
            lse = torch.logsumexp(logits, dim=-1)  # [n]
            logprobs[part] = logits.gather(-1, targets[part, None]).squeeze(-1) - lse
            if with_entropy:
                logits.sub_(lse[:, None])  # log p, in place: no second [n, V] buffer
                entropy[part] = -(logits.exp() * logits).sum(dim=-1)
            del logits
        ctx.save_for_backward(hidden, weight, targets, entropy)
        ctx.temperature, ctx.chunk_rows, ctx.with_entropy = temperature, chunk_rows, with_entropy
        ctx.compute_dtype = dtype  # backward runs outside autocast: it reuses the forward's compute dtype
        ctx.mark_non_differentiable(targets)
        return logprobs, entropy

    @staticmethod
    def backward(ctx, grad_logprobs, grad_entropy):
        hidden, weight, targets, entropy = ctx.saved_tensors
        temperature, chunk_rows = ctx.temperature, ctx.chunk_rows
        need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        rows = targets.shape[0]
        if grad_logprobs is None:
            grad_logprobs = torch.zeros(rows, dtype=torch.float32, device=hidden.device)
        use_entropy = ctx.with_entropy and grad_entropy is not None
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        # accumulated over chunks in float32 so a bf16 weight's gradient is rounded once, not once per chunk
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_weight else None
        head = weight.to(ctx.compute_dtype)
        for start in range(0, rows, chunk_rows):
            part = slice(start, start + chunk_rows)
            chunk_hidden = hidden[part].to(head.dtype)
            log_p = _chunk_logits(chunk_hidden, head, temperature)  # [n, V], becomes log p then d logits
            log_p.sub_(torch.logsumexp(log_p, dim=-1, keepdim=True))
            g_logp = grad_logprobs[part].float()  # [n]
            if use_entropy:
                g_ent = grad_entropy[part].float()[:, None]  # [n, 1]
                scale = g_logp[:, None] + g_ent * (log_p + entropy[part, None])  # [n, V]
                grad_logits = log_p.exp_().mul_(scale)
                del scale
            else:
                grad_logits = log_p.exp_().mul_(g_logp[:, None])
            grad_logits.neg_()  # -p * (g_logp + g_ent * (log p + H))
            grad_logits.scatter_add_(-1, targets[part, None], g_logp[:, None])
            if temperature != 1.0:
                grad_logits.div_(temperature)
            grad_logits = grad_logits.to(head.dtype)  # the LM-head matmul's backward runs in the compute dtype
            if need_hidden:
                grad_hidden[part] = (grad_logits @ head).to(hidden.dtype)
            if need_weight:
                grad_weight += (grad_logits.t() @ chunk_hidden).float()
            del grad_logits, log_p
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        return grad_hidden, grad_weight, None, None, None, None


MAX_CHUNK_ELEMENTS = 2**26  # logits per chunk (256 MB in float32): caps chunk rows for large vocabularies


def token_logprobs(
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    *,
    temperature: float = 1.0,
    with_entropy: bool = True,
    chunk_rows: int = 2048,
    max_chunk_elements: int = MAX_CHUNK_ELEMENTS,
) -> tuple[Tensor, Tensor]:
    """log p(targets) and entropy for hidden [B, T, H], LM-head weight [V, H], targets [B, T] -> ([B, T], [B, T]).

    Both outputs are float32 and differentiable w.r.t. `hidden` and `weight`; entropy is zeros when
    `with_entropy` is False. Logits are never materialised for more than `chunk_rows` tokens at once, nor for more
    than `max_chunk_elements` logits (so a 151,936-word vocabulary gets 441-row chunks: ~256 MB of float32 logits).
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    chunk_rows = max(1, min(chunk_rows, max_chunk_elements // weight.shape[0]))
    shape = targets.shape
    flat_hidden = hidden.reshape(-1, hidden.shape[-1])  # [N, H]
    flat_targets = targets.reshape(-1).long()  # [N]
    if flat_targets.numel() == 0:
        empty = flat_hidden.new_zeros(shape, dtype=torch.float32)
        return empty + 0.0 * flat_hidden.sum() + 0.0 * weight.sum(), empty.clone()
    logprobs, entropy = _ChunkedTokenLogprobs.apply(
        flat_hidden, weight, flat_targets, float(temperature), int(chunk_rows), bool(with_entropy)
    )
    return logprobs.reshape(shape), entropy.reshape(shape)


def naive_token_logprobs(
    hidden: Tensor, weight: Tensor, targets: Tensor, *, temperature: float = 1.0, with_entropy: bool = True
) -> tuple[Tensor, Tensor]:
    """Reference implementation: full float32 logits for every token at once (tests and benchmarks only)."""
    logits = F.linear(hidden, weight).float() / temperature  # [B, T, V]
    log_probs = logits.log_softmax(dim=-1)
    logprobs = log_probs.gather(-1, targets[..., None].long()).squeeze(-1)
    if not with_entropy:
        return logprobs, torch.zeros_like(logprobs)
    return logprobs, -(log_probs.exp() * log_probs).sum(dim=-1)
