"""advantage=gdpo: group reward-decoupled normalization over several named rewards.

"GDPO: Group reward-Decoupled Normalization Policy Optimization for Multi-reward RL Optimization", Liu, Dong, ...,
Molchanov, arXiv 2601.05242. With named rewards r^k (batch.rewards) and weights w_k:

    A^k_i = (r^k_i - mean_{j in g(i)} r^k_j) / (std_{j in g(i)} r^k_j + eps)      (per reward, per group)
    S_i   = sum_k w_k A^k_i
    A_i   = (S_i - mean_batch S) / (std_batch S + eps)  =  S_i / (std_batch S + eps)   (range independent of K)

std is Bessel-corrected (torch.std) in both places, as the authors' TRL code; the batch statistics are over
completions. With one reward, gdpo = batch-normalized grpo. The z-scores sum to 0 within each group, so
mean_batch S = 0 and the batch step only rescales; it is not subtracted (in float32 it is rounding noise), so a group
whose rewards are all constant keeps A = 0 exactly (verl-GDPO's token-weighted whitening would shift it by
-mean/std). A group of size 1 has A^k = 0; a constant S gives 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from rlpost.advantages import ADVANTAGES
from rlpost.advantages.common import AdvantageConfig, group_zscore, safe_divide
from rlpost.batch import RolloutBatch
from rlpost.config import check


@dataclass
class GDPOAdvantageConfig(AdvantageConfig):
    name: str = "gdpo"
    weights: dict[str, float] = field(default_factory=dict)  # reward name -> w_k; names left out weigh 1.0
    eps: float = 1e-6  # added to the group and the batch std

    def __post_init__(self) -> None:
        check(self.eps >= 0, "eps", f"must be >= 0, got {self.eps}")


@ADVANTAGES.register("gdpo", GDPOAdvantageConfig)
def gdpo_advantage(
    rewards: Tensor, group_index: Tensor, cfg: GDPOAdvantageConfig, *, batch: RolloutBatch, **_: object
) -> Tensor:
    """[B] batch-normalized weighted sum of per-reward group z-scores."""
    named = batch.rewards or {"reward": rewards}
    unknown = sorted(set(cfg.weights) - set(named))
    check(not unknown, "advantage.weights", f"{unknown} are not rewards of this run (rewards: {sorted(named)})")
    total = torch.zeros(len(group_index))
    for name, values in named.items():
        total = total + cfg.weights.get(name, 1.0) * group_zscore(values.float(), group_index, cfg.eps)
    if len(total) < 2:
        return torch.zeros_like(total)
    return safe_divide(total, total.double().std().float() + cfg.eps)  # mean_batch S = 0: not subtracted
