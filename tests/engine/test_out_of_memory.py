"""A CUDA out-of-memory error stops the run with one line (step, phase, the keys that reduce memory) and leaves the
last checkpoint intact. Injected on the CPU: torch.cuda.OutOfMemoryError exists in CPU builds of torch."""

from __future__ import annotations

import pytest
import torch

from rlpost.checkpoint import list_checkpoints
from rlpost.cli import compose_train
from rlpost.config import validate
from rlpost.engine.torch import TorchEngine
from rlpost.trainer import RunStopped, train

pytestmark = pytest.mark.slow


def test_out_of_memory_in_the_update_stops_with_one_line_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    cfg = validate(
        compose_train(["debug=fast", "steps=3", "checkpoint_every=1", "logger.progress=false", "eval_size=4"])
    )
    forward = TorchEngine.forward
    calls = {"count": 0}

    def forward_that_runs_out(self, batch, entropy_grad=False):
        calls["count"] += 1
        if calls["count"] == 2:  # step 1 has one micro-batch; step 2's first forward runs out
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(self, batch, entropy_grad)

    monkeypatch.setattr(TorchEngine, "forward", forward_that_runs_out)
    with pytest.raises(RunStopped) as stopped:
        train(cfg, tmp_path)
    message = str(stopped.value)
    assert "\n" not in message
    assert message.startswith("step 2, phase train: CUDA out of memory; lower trainer.micro_batch_tokens")
    for key in ("trainer.gradient_checkpointing=true", "trainer.logprob_chunk_rows", "rollout.batch_size"):
        assert key in message
    checkpoints = list_checkpoints(tmp_path / "checkpoints")
    assert [p.name for p in checkpoints] == ["step_1"]
    assert message.endswith(f"last good checkpoint: {checkpoints[0]}")
    assert not list((tmp_path / "checkpoints").glob(".tmp_*"))
    monkeypatch.setattr(TorchEngine, "forward", forward)  # the intact checkpoint resumes
    summary = train(cfg, tmp_path)
    assert summary["steps"] == 3 and (tmp_path / "checkpoints" / "step_3").is_dir()
