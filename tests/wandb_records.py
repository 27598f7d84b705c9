"""Read the records of an offline W&B run (`run-<id>.wandb`) with wandb's own protobuf classes.

The file is W&B's LevelDB-style log: a 7-byte header (":W&B", magic 0xBEE1,
version), then 32 KiB blocks of records, each with a 7-byte header (CRC32,
length, type: 1 full, 2 first, 3 middle, 4 last) and a serialized `Record`.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> list[wandb_internal_pb2.Record]:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", "not a W&B run file"
    records, pending, pos = [], b"", 7
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # block trailer: padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pos += 7
        pending += data[pos : pos + length]
        pos += length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def history_rows(records) -> list[dict[str, str]]:
    rows = []
    for record in records:
        if record.WhichOneof("record_type") == "history":
            rows.append(
                {item.key or "/".join(item.nested_key): item.value_json for item in record.history.item}
            )
    return rows


def run_config(records) -> dict[str, str]:
    for record in records:
        if record.WhichOneof("record_type") == "run":
            return {item.key: item.value_json for item in record.run.config.update}
    return {}


def records_with_history(path: Path, rows: int, timeout: float = 60.0) -> list[wandb_internal_pb2.Record]:
    """The records once `rows` history rows are in the file: W&B's service writes in the background."""
    deadline = time.monotonic() + timeout
    records = read_records(path)
    while len(history_rows(records)) < rows and time.monotonic() < deadline:
        time.sleep(0.2)
        records = read_records(path)
    return records
