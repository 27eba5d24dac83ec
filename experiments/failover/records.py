"""Reading what the sink and the camera wrote: sink JSON lines, camera CSV and status files."""

from __future__ import annotations

import contextlib
import csv
import json
from pathlib import Path
from typing import Any

from experiments.failover.analysis import Delivered


def parse_sink_line(line: str) -> Delivered | None:
    """One sink line -> Delivered; None for a partial (still being written) or foreign line."""
    try:
        data = json.loads(line)
        return Delivered(str(data["cameraID"]), str(data["frameId"]),
                         int(data["createdUnixNs"]), int(data["sinkUnixNs"]))
    except (ValueError, KeyError, TypeError):
        return None


class SinkTail:
    """Reads the sink's output incrementally while the run goes on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[Delivered] = []
        self._offset = 0

    def poll(self) -> list[Delivered]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return self.records
        # Only whole lines: the last one may still be half written.
        end = chunk.rfind(b"\n") + 1
        self._offset += end
        for raw in chunk[:end].splitlines():
            record = parse_sink_line(raw.decode(errors="replace"))
            if record is not None:
                self.records.append(record)
        return self.records


def read_sink(path: Path) -> list[Delivered]:
    return SinkTail(path).poll()


def read_json(path: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            return data
    return {}


def sent_frame_ids(camera_id: str, sent: int, records_csv: Path) -> list[tuple[str, str]]:
    """Every frame the camera created: ids are `<camera>-<seq>` for seq < sent, plus any id in its CSV."""
    ids = [(camera_id, f"{camera_id}-{seq}") for seq in range(sent)]
    known = {fid for _, fid in ids}
    with contextlib.suppress(FileNotFoundError), open(records_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            fid = row.get("frame_id") or ""
            if fid and fid not in known:
                known.add(fid)
                ids.append((camera_id, fid))
    return ids
