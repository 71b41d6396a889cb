"""advantage=stratified: Stratified GRPO's Stratified Advantage Normalization (SAN), blended with GRPO.

"Stratified GRPO: Handling Structural Heterogeneity in Reinforcement Learning of LLM Search Agents", Zhu, Chen, Yu,
Zhao, Jia, arXiv 2510.06214. Inside each prompt group, completions are split into strata B_k by a structural
property; each is compared only with its peers:

    A_san_i = (R_i - mean_{j in B_k} R_j) / (std_{j in B_k} R_j + eps)      (i in B_k, B_k inside g(i))
    A_gn_i  = (R_i - mean_{j in g(i)} R_j) / (std_{j in g(i)} R_j + eps)   (GRPO)
    A_i     = alpha * A_san_i + (1 - alpha) * A_gn_i                       (the paper's finite-sample blend)

std is Bessel-corrected. A stratum of size 1 has A_san = 0 (no peer), likewise an all-equal stratum.
Stratum key (`stratum`): the paper stratifies search-agent trajectories by their number of search calls. Dataset rows
are not in the RolloutBatch, so the key is computed from the completion itself:
  tool_calls: occurrences of `call_pattern` in the decoded completion (the paper's key; "<search>" by default),
              capped at max_strata - 1 so counts >= max_strata - 1 share the last stratum;
  length:     response-length bucket, the index of the first edge in `length_edges` above the length;
  truncated:  finished vs. hit max_new_tokens.
Reconstructed: the paper blends with a tuned alpha whose value we could not recover; alpha = 0.5 is our default.
With one stratum per group (e.g. tool_calls on a task without tools) the estimator is exactly GRPO.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from rlpost.advantages import ADVANTAGES
from rlpost.advantages.common import AdvantageConfig, group_zscore
from rlpost.batch import RolloutBatch
from rlpost.config import check, in_range

STRATUM_KEYS = ("tool_calls", "length", "truncated")


@dataclass
class StratifiedAdvantageConfig(AdvantageConfig):
    name: str = "stratified"
    stratum: str = "tool_calls"  # how completions are stratified: tool_calls, length or truncated
    call_pattern: str = "<search>"  # stratum=tool_calls: the string that opens one tool call
    max_strata: int = 4  # stratum=tool_calls: call counts >= max_strata - 1 share the last stratum
    length_edges: list[int] = field(default_factory=lambda: [256, 1024])  # stratum=length: bucket boundaries
    alpha: float = 0.5  # weight of SAN in the blend (1: pure SAN, 0: GRPO); not given by the paper
    eps: float = 1e-6  # added to the stratum and group std

    def __post_init__(self) -> None:
        allowed = ", ".join(STRATUM_KEYS)
        check(self.stratum in STRATUM_KEYS, "stratum", f"must be one of {allowed}, got {self.stratum!r}")
        check(bool(self.call_pattern), "call_pattern", "must be a non-empty string")
        check(self.max_strata >= 1, "max_strata", f"must be >= 1, got {self.max_strata}")
        check(list(self.length_edges) == sorted(self.length_edges), "length_edges", "must be ascending")
        in_range(self.alpha, "alpha", 0.0, 1.0)
        check(self.eps >= 0, "eps", f"must be >= 0, got {self.eps}")


def stratum_ids(batch: RolloutBatch, cfg: StratifiedAdvantageConfig) -> Tensor:
    """[B] long stratum of each completion (comparable only within a prompt group)."""
    if cfg.stratum == "tool_calls":
        check(len(batch.texts) == len(batch), "advantage.stratum", "tool_calls needs batch.texts (decoded completions)")
        calls = torch.tensor([text.count(cfg.call_pattern) for text in batch.texts], dtype=torch.long)
        return calls.clamp(max=cfg.max_strata - 1)
    if cfg.stratum == "length":
        return torch.bucketize(batch.response_lengths, torch.tensor(cfg.length_edges, dtype=torch.long), right=True)
    check(batch.truncated is not None, "advantage.stratum", "truncated needs batch.truncated")
    return batch.truncated.long()


def blended_advantage(rewards: Tensor, group_index: Tensor, strata: Tensor, alpha: float, eps: float) -> Tensor:
    """[B] alpha * SAN + (1 - alpha) * GRPO for the given per-completion strata."""
    cells = torch.unique(group_index * (int(strata.max()) + 1) + strata, return_inverse=True)[1]  # [B] (group, stratum)
    san = group_zscore(rewards, cells, eps)
    return alpha * san + (1 - alpha) * group_zscore(rewards, group_index, eps)


@ADVANTAGES.register("stratified", StratifiedAdvantageConfig)
def stratified_advantage(
    rewards: Tensor, group_index: Tensor, cfg: StratifiedAdvantageConfig, *, batch: RolloutBatch, **_: object
) -> Tensor:
    """[B] blend of within-stratum and within-group z-scores."""
    return blended_advantage(rewards.float(), group_index, stratum_ids(batch, cfg), cfg.alpha, cfg.eps)
