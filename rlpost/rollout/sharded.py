"""Data-parallel generation: each of W ranks generates a share of the requests, every rank gets the whole batch.

Whole groups stay on one rank (balanced by rollout count, rlpost.distributed.shard_groups), so group-relative
advantages are exact; the gathered batch is in request order on every rank, so samplers, rewards and advantages
see the global batch and stay identical across ranks. Each rank samples with the step's seed folded with its rank.

`lockstep` (ZeRO-3, where every forward pass is a collective) applies to a rollout that generates with the engine's
own module (rollout=hf): every rank generates the same number of rows (short shards are padded with copies of a
request and the copies dropped) and stops decoding only when every rank has finished, so no rank waits in a
collective that another skipped. rollout=vllm has its own copy of the weights and generates without collectives.
"""

from __future__ import annotations

from dataclasses import replace

from rlpost import distributed
from rlpost.batch import RolloutBatch
from rlpost.rollout import Request


def rank_seed(seed: int, rank: int) -> int:
    return (seed + rank * 0x2545F4914F6CDD1D) % (2**63)


class ShardedRollout:
    """Wraps a rollout engine (rollout=hf or vllm) with the same interface."""

    def __init__(self, inner, lockstep: bool = False) -> None:
        self.inner, self.lockstep = inner, lockstep and inner.uses_policy_module
        if self.lockstep:
            inner.all_finished = distributed.all_true  # the decoding loop's stop decision, agreed by all ranks

    def sync_weights(self, named_tensors) -> None:
        self.inner.sync_weights(named_tensors)

    def close(self) -> None:
        self.inner.close()

    def generate(self, requests: list[Request], seed: int, greedy: bool = False) -> RolloutBatch:
        world, rank = distributed.world_size(), distributed.rank()
        if world == 1:
            return self.inner.generate(requests, seed=seed, greedy=greedy)
        shards = distributed.shard_groups([r.n for r in requests], world)
        mine = [requests[g] for g in shards[rank]]
        if self.lockstep:
            rows = [sum(requests[g].n for g in shard) for shard in shards]
            missing = max(rows) - rows[rank]
            if missing:  # a throw-away request so every rank runs the same forward passes
                mine = mine + [replace(requests[0], n=missing)]
        local = self.inner.generate(mine, seed=rank_seed(seed, rank), greedy=greedy) if mine else None
        pieces: dict[int, RolloutBatch] = {}
        for groups, batch in distributed.all_gather_objects((shards[rank], local)):
            for slot, group in enumerate(groups):  # the inner batch numbers its groups 0.. in request order
                pieces[group] = batch.select((batch.group_index == slot).nonzero().squeeze(1))
        return RolloutBatch.concat([pieces[g] for g in range(len(requests))])

    def __getattr__(self, name: str):  # everything else (tokenizer, cfg, metrics) is the inner engine's
        return getattr(self.inner, name)
