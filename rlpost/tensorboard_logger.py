"""logger=tensorboard: per-step scalar metrics and sample completions (as text) in TensorBoard event files under
<run dir>/tensorboard. A resumed run appends to the same directory with the steps after its checkpoint."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass
class TensorBoardLoggerConfig:
    name: str = "tensorboard"
    progress: bool = True  # the console progress bar stays on
    samples_every: int = 10  # write the sample completions as text every this many steps; 0 = never

    def __post_init__(self) -> None:
        from rlpost.config import check

        check(self.samples_every >= 0, "samples_every", f"must be >= 0, got {self.samples_every}")


class TensorBoardSink:
    """Mirrors RunLog's metrics and samples into event files; the writer (and its file) starts at the first record."""

    def __init__(self, run_dir: Path, cfg: TensorBoardLoggerConfig) -> None:
        self.log_dir, self.cfg, self._writer = run_dir / "tensorboard", cfg, None

    @property
    def writer(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.log_dir))
        return self._writer

    def metrics(self, record: dict) -> None:
        step = int(record["step"])
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(key, value, global_step=step)
        self.writer.flush()

    def samples(self, step: int, rows: list[dict]) -> None:
        if rows and self.cfg.samples_every and step % self.cfg.samples_every == 0:
            text = "\n\n".join(f"    {json.dumps(row)}" for row in rows)
            self.writer.add_text("samples", text, global_step=step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
