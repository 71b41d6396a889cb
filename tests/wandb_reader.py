"""Read back what W&B wrote offline: the records of a run-<id>.wandb file (LevelDB-log framing of protobufs).

wandb >= 0.2x has no Python reader for its transaction log any more (its core is written in Go), so the framing is
read here: a 7-byte header (":W&B", magic 0xBEE1, version 0), then 32 KiB blocks of chunks, each a 7-byte header
(CRC32, little-endian length, type FULL=1 / FIRST=2 / MIDDLE=3 / LAST=4) and its payload; a block's tail shorter
than a header is padding. Payloads are wandb_internal_pb2.Record messages.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32 * 1024
HEADER = 7


def records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    out, pending, position = [], b"", HEADER
    while position + HEADER <= len(data):
        block_left = BLOCK - position % BLOCK
        if block_left < HEADER:
            position += block_left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + HEADER])
        payload = data[position + HEADER : position + HEADER + length]
        position += HEADER + length
        if kind == 0 and length == 0:
            continue
        pending = payload if kind in (1, 2) else pending + payload
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


def history(path: Path) -> list[dict]:
    """Each logged step as {key: value} (values decoded from JSON)."""
    rows = []
    for record in records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append(
                {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            )
    return rows


def run_info(path: Path) -> dict:
    """The run record: id, group, job type and config keys."""
    for record in records(path):
        if record.WhichOneof("record_type") == "run":
            run = record.run
            config = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in run.config.update}
            return {"id": run.run_id, "group": run.run_group, "job_type": run.job_type, "config": config}
    raise AssertionError(f"{path} has no run record")
