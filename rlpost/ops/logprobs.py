"""Log-probs and entropy of sampled tokens from final hidden states, one chunk of rows at a time.

The full [tokens x vocab] float32 logits never exist at once: each chunk applies the LM head, takes
log-softmax, gathers the sampled token and the entropy, and is recomputed in the backward pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint


def _chunk_logprobs(hidden: Tensor, weight: Tensor, targets: Tensor, temperature: float, with_entropy: bool):
    logits = F.linear(hidden, weight).float() / temperature  # [N, V] float32 even under bf16 weights
    log_probs = logits.log_softmax(dim=-1)
    token_logprobs = log_probs.gather(-1, targets[:, None]).squeeze(-1)  # [N]
    if not with_entropy:
        return token_logprobs, torch.zeros_like(token_logprobs)
    entropy = -(log_probs.exp() * log_probs).sum(dim=-1)  # [N]
    return token_logprobs, entropy


def token_logprobs(
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    *,
    temperature: float = 1.0,
    with_entropy: bool = True,
    chunk_rows: int = 2048,
) -> tuple[Tensor, Tensor]:
    """log p(targets) and entropy for hidden [B, T, H], LM-head weight [V, H], targets [B, T] -> ([B, T], [B, T])."""
    shape = targets.shape
    flat_hidden, flat_targets = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
    logps, entropies = [], []
    recompute = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    for start in range(0, flat_targets.shape[0], chunk_rows):
        rows = slice(start, start + chunk_rows)
        args = (flat_hidden[rows], weight, flat_targets[rows], temperature, with_entropy)
        if recompute:
            logp, entropy = checkpoint(_chunk_logprobs, *args, use_reentrant=False)
        else:
            logp, entropy = _chunk_logprobs(*args)
        logps.append(logp)
        entropies.append(entropy)
    return torch.cat(logps).reshape(shape), torch.cat(entropies).reshape(shape)
