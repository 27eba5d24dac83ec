"""The one reader of what the VEI processes record: the local sink's JSON lines, the camera's
per-frame CSV and its JSON status file.

The formats are written by workloads/vei/sink.py (one line per accepted result) and
workloads/vei/camera.py (one row per frame, at its ack or at the end); this module is the only
place that parses them, for every experiment and test.
"""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CAMERA_CSV_HEADER = ("frame_id", "created_unix_ns", "acked_unix_ns", "attempts")


@dataclass(frozen=True)
class SinkRecord:
    """One sink line: a frame's result reached the cloud sink at `sink_ns` (the sink's clock)."""

    camera_id: str
    frame_id: str
    created_ns: int
    sink_ns: int
    gateway_in_ns: int | None = None
    vision_done_ns: int | None = None

    @property
    def latency_ms(self) -> float:
        return (self.sink_ns - self.created_ns) / 1e6


def parse_sink_line(line: str) -> SinkRecord | None:
    """One sink line -> SinkRecord; None for a partial (still being written) or foreign line."""
    try:
        data = json.loads(line)
        return SinkRecord(str(data["cameraID"]), str(data["frameId"]), int(data["createdUnixNs"]),
                          int(data["sinkUnixNs"]), int(data.get("gatewayInUnixNs") or 0) or None,
                          int(data.get("visionDoneUnixNs") or 0) or None)
    except (ValueError, KeyError, TypeError):
        return None


class SinkTail:
    """Reads a sink file incrementally while the run goes on; every line once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[SinkRecord] = []
        self._offset = 0

    def poll(self) -> list[SinkRecord]:
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


def read_sink(path: Path) -> list[SinkRecord]:
    """Every line of a sink file, duplicates included, in file order."""
    return SinkTail(path).poll()


def first_per_frame(records: Iterable[SinkRecord], frame_prefix: str = "") -> dict[str, SinkRecord]:
    """The first arrival of every frame id (optionally only ids starting with `frame_prefix`)."""
    out: dict[str, SinkRecord] = {}
    for rec in sorted(records, key=lambda r: r.sink_ns):
        if rec.frame_id.startswith(frame_prefix) and rec.frame_id not in out:
            out[rec.frame_id] = rec
    return out


def sink_stats(path: Path) -> dict[str, Any]:
    """The recorder's `<out>.stats.json` (accepted, duplicates): complete once it stops, its duplicates
    current at any time; {} if absent (nothing stopped it and no duplicate came)."""
    return read_status(path.with_name(path.name + ".stats.json"))


@dataclass(frozen=True)
class CameraRecord:
    """One camera CSV row: a frame the camera created, and whether and when it was acked."""

    frame_id: str
    created_ns: int
    acked_ns: int | None
    attempts: int


def read_camera_csv(path: Path) -> list[CameraRecord]:
    """Every row of the camera's CSV ([] when the file does not exist), in file order."""
    rows: list[CameraRecord] = []
    with contextlib.suppress(FileNotFoundError), path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            with contextlib.suppress(KeyError, ValueError):
                rows.append(CameraRecord(row["frame_id"], int(row["created_unix_ns"]),
                                         int(row["acked_unix_ns"]) if row.get("acked_unix_ns") else None,
                                         int(row.get("attempts") or 0)))
    return rows


def read_status(path: Path) -> dict[str, Any]:
    """A JSON status/stats file as a dict; {} while it does not exist or is being replaced."""
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            return data
    return {}


def sent_frame_ids(camera_id: str, sent: int, camera_rows: Sequence[CameraRecord]) -> list[tuple[str, str]]:
    """Every frame a streaming camera created: ids `<camera>-<seq>` for seq < sent, plus any id in its CSV."""
    ids = [(camera_id, f"{camera_id}-{seq}") for seq in range(sent)]
    known = {fid for _, fid in ids}
    for row in camera_rows:
        if row.frame_id and row.frame_id not in known:
            known.add(row.frame_id)
            ids.append((camera_id, row.frame_id))
    return ids
