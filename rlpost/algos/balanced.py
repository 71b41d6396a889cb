"""loss_agg=balanced: Balanced Aggregation of per-token losses.

"Balanced Aggregation: Understanding and Fixing Aggregation Bias in GRPO", Zeng, Huang, Yin, Liu, Li, Li, Wu, Zheng,
Zhang, Huang, Qiu, arXiv 2605.04077. Token aggregation couples the update to the length of positive vs negative
responses ("sign-length coupling"); sequence aggregation down-weights long responses. BA takes a token mean inside
the positive and inside the negative subset of each group and weights each subset by its number of sequences.

As implemented, with S = (group g, sign s) subsets, n_S sequences and T_S loss-carrying tokens in the minibatch and
N the minibatch's loss-carrying sequences:

    loss = (1/N) * sum_S n_S * (sum_{i in S} sum_t L_{i,t}) / T_S

i.e. each group contributes (n_+/G) * tokenmean_+ + (n_-/G) * tokenmean_-, summed over groups and divided by the
number of groups (for equal group sizes G; with unequal sizes every sequence keeps weight 1/N). Choices the paper's
abstract leaves open, made here: zero-advantage sequences form a third subset (no effect on the policy-gradient term,
keeps KL/entropy terms of such groups); a [B, T] advantage's sign is that of its masked sum.

Micro-batch invariance: n_S and T_S come from Normalizer (minibatch totals) when Normalizer.of received the
minibatch's advantages; otherwise they are counted in the micro-batch at hand, which is exact only when a micro-batch
holds whole subsets.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlpost.algos.common import Normalizer, sequence_sign, subset_key, subset_totals


def subset_weights(keys: Tensor, mask: Tensor, norm: Normalizer) -> Tensor:
    """Per-row weight n_S / (T_S * N) of balanced aggregation -> [B] float32."""
    unique, tokens, seqs = subset_totals(keys, mask)
    if norm.subset_tokens:
        tokens = torch.tensor([norm.subset_tokens.get(int(k), 0.0) for k in unique], dtype=torch.float64)
        seqs = torch.tensor([norm.subset_seqs.get(int(k), 0.0) for k in unique], dtype=torch.float64)
    per_subset = seqs / tokens.clamp(min=1.0) / max(norm.num_seqs, 1.0)  # [S]
    inverse = torch.searchsorted(unique, keys.cpu())
    return per_subset[inverse].to(device=keys.device, dtype=torch.float32)


def balanced_aggregate(
    token_loss: Tensor, mask: Tensor, group_index: Tensor | None, norm: Normalizer, advantages: Tensor | None = None
) -> Tensor:
    """Scalar Balanced-Aggregation loss of per-token losses [B, T] (see the module docstring)."""
    if advantages is None:
        raise ValueError("loss_agg=balanced needs the advantages (to split each group by advantage sign)")
    if group_index is None:
        group_index = torch.zeros(mask.shape[0], dtype=torch.long, device=mask.device)
    keys = subset_key(group_index, sequence_sign(advantages, mask))  # [B]
    weights = subset_weights(keys, mask, norm)  # [B]
    return ((token_loss * mask).sum(dim=1) * weights).sum()
