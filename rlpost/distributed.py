"""The process group and the few collectives the training step needs; rank logic lives here and nowhere else.

With one process every helper is the identity, so the step reads the same for trainer=torch and for W ranks of
trainer=deepspeed. Rank, world size and master address come from torchrun's environment (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT), which rlpost.launch sets from the Slurm task under srun.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import timedelta

import torch
import torch.distributed as dist


def env_rank() -> tuple[int, int, int]:
    """(rank, world size, local rank) this process was started with; (0, 1, 0) when started alone.

    torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; under Slurm, rlpost.launch.export_distributed_env sets them
    from the srun step's task before training starts.
    """
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    return 0, 1, 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def init(device: torch.device | str = "cpu", single: bool = False) -> None:
    """Join the process group (gloo on CPU, nccl on CUDA) when started as one of several ranks.

    A single process gets a group of one only when `single` (DeepSpeed needs one); otherwise nothing happens.
    """
    rank, world, local_rank = env_rank()
    if dist.is_initialized() or (world == 1 and not single):
        return
    if world == 1:
        os.environ.setdefault("MASTER_PORT", str(free_port()))
    os.environ.setdefault("RANK", str(rank))
    os.environ.setdefault("WORLD_SIZE", str(world))
    os.environ.setdefault("LOCAL_RANK", str(local_rank))
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(free_port()))
    backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, timeout=timedelta(minutes=30))


def close() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_gather_objects(value) -> list:
    """[value of rank 0, value of rank 1, ...] on every rank (pickled; for small CPU objects and batches)."""
    if not dist.is_initialized():
        return [value]
    gathered: list = [None] * world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_object(value, src: int = 0):
    """Rank `src`'s value on every rank."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def _all_reduce(value: float, dtype: torch.dtype, op) -> float:
    """`value` reduced over ranks with `op` (one-element tensor on the CPU; gloo and nccl both take it)."""
    tensor = torch.tensor([value], dtype=dtype)
    dist.all_reduce(tensor, op=op)
    return tensor.item()


def all_true(flag: bool) -> bool:
    """True on every rank only when `flag` holds on every rank: a decision that guards a collective."""
    if not dist.is_initialized():
        return bool(flag)
    return _all_reduce(0 if flag else 1, torch.int64, dist.ReduceOp.SUM) == 0


def any_true(flag: bool) -> bool:
    """True on every rank when `flag` holds on some rank (e.g. a preemption signal that reached one rank)."""
    return not all_true(not flag)


def sum_float(value: float) -> float:
    """The sum of `value` over ranks."""
    if not dist.is_initialized():
        return float(value)
    return float(_all_reduce(float(value), torch.float64, dist.ReduceOp.SUM))


def max_int(value: int) -> int:
    """The largest `value` over ranks (e.g. micro-batch counts, so every rank runs as many)."""
    if not dist.is_initialized():
        return int(value)
    return int(_all_reduce(int(value), torch.int64, dist.ReduceOp.MAX))


def mean_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """Each numeric metric averaged over ranks (keys missing on a rank are averaged over the ranks that have it)."""
    if not dist.is_initialized():
        return metrics
    records = all_gather_objects(metrics)
    keys = sorted({k for r in records for k, v in r.items() if isinstance(v, (int, float))})
    merged = dict(metrics)
    for key in keys:
        values = [float(r[key]) for r in records if key in r]
        merged[key] = sum(values) / len(values)
    return merged


def shard_groups(sizes: list[int], world: int) -> list[list[int]]:
    """Whole groups per rank, balanced by rollout count: largest group first to the least-loaded rank.

    Returns, for each rank, the indices of its groups in ascending order. Deterministic: every rank computes the
    same assignment from the same sizes.
    """
    loads = [0] * world
    owned: list[list[int]] = [[] for _ in range(world)]
    for index in sorted(range(len(sizes)), key=lambda g: (-sizes[g], g)):
        target = min(range(world), key=lambda r: (loads[r], len(owned[r]), r))
        owned[target].append(index)
        loads[target] += sizes[index]
    return [sorted(groups) for groups in owned]


def launch_local_ranks(nproc: int, cli_args: list[str]) -> int:
    """Run `python -m rlpost.cli <cli_args>` as `nproc` ranks under torch's elastic launcher; its exit code.

    The caller passes the run dir it fixed (hydra.run.dir=...), so every rank writes to the same one.
    """
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={nproc}",
        "--nnodes=1",
        f"--master_port={free_port()}",
        "-m",
        "rlpost.cli",
        *cli_args,
    ]
    threads = os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))  # cores split by rank
    env = dict(os.environ, OMP_NUM_THREADS=threads)
    return subprocess.run(command, env=env).returncode
