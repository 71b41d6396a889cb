"""DAPO's soft overlong punishment, added to any reward as the named reward "overlong".

"DAPO: An Open-Source LLM Reinforcement Learning System at Scale", Yu et al., arXiv 2503.14476, Eq. (13),
with L_max the generation limit (rollout.max_new_tokens) and L_cache the buffer:

    R_length(y) = 0                                   if |y| <= L_max - L_cache
                = ((L_max - L_cache) - |y|) / L_cache  if L_max - L_cache < |y| <= L_max
                = -1                                  if |y| > L_max
scaled by `overlong_factor` (1 in the paper).
"""

from __future__ import annotations

import torch
from torch import Tensor


def overlong_penalty(lengths: Tensor, max_length: int, buffer: int, factor: float = 1.0) -> Tensor:
    """[B] penalty (<= 0) for response lengths [B]."""
    lengths = lengths.float()
    start = max_length - buffer
    ramp = (start - lengths) / buffer
    penalty = torch.where(lengths <= start, torch.zeros_like(lengths), ramp)
    return factor * torch.where(lengths > max_length, torch.full_like(lengths, -1.0), penalty)
