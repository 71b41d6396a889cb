"""algo=sapo: Soft Adaptive Policy Optimization, a smooth sigmoid gate in place of the hard clip.

"Soft Adaptive Policy Optimization" (Qwen team), arXiv 2511.20347. As implemented
(seq-mean-token-mean, as in the paper):

    f(r; tau)  = sigmoid( tau (r - 1) ) * 4 / tau,        tau = tau_pos if A_{i,t} > 0 else tau_neg
    L_{i,t}    = -f(r_{i,t}; tau_{i,t}) * A_{i,t}

df/dr = 4 sigma (1 - sigma) equals 1 at r = 1 (on-policy: the plain policy gradient) and decays smoothly off-policy;
tau_neg > tau_pos damps negative-advantage tokens faster. clip_low / clip_high are unused. Paper: 1.0 / 1.05.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlpost.algos import ALGOS
from rlpost.algos.common import AlgoConfig, log_ratio, masked_mean
from rlpost.config import check


@dataclass
class SAPOConfig(AlgoConfig):
    name: str = "sapo"
    tau_pos: float = 1.0  # gate temperature for A > 0
    tau_neg: float = 1.05  # gate temperature for A <= 0 (larger: faster decay off-policy)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.tau_pos > 0, "tau_pos", f"must be > 0, got {self.tau_pos}")
        check(self.tau_neg > 0, "tau_neg", f"must be > 0, got {self.tau_neg}")


def soft_gate(ratio: Tensor, tau: Tensor) -> Tensor:
    """f(r; tau) = sigmoid(tau (r - 1)) * 4 / tau."""
    return torch.sigmoid(tau * (ratio - 1.0)) * (4.0 / tau)


@ALGOS.register("sapo", SAPOConfig)
def sapo(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, cfg: SAPOConfig, **_: object
) -> tuple[Tensor, dict[str, float]]:
    """Per-token SAPO loss [B, T] and its metrics."""
    ratio = torch.exp(log_ratio(logprobs, old_logprobs))  # [B, T]
    tau = torch.where(advantages > 0, cfg.tau_pos, cfg.tau_neg)
    gate = soft_gate(ratio, tau)
    with torch.no_grad():
        slope = 4.0 * torch.sigmoid(tau * (ratio - 1.0)) * (1.0 - torch.sigmoid(tau * (ratio - 1.0)))
        metrics = {"gate_slope_mean": float(masked_mean(slope, mask)), "ratio_mean": float(masked_mean(ratio, mask))}
    return -gate * advantages, metrics
