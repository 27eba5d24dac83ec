"""Tidy per-frame records: one row per frame the camera created, joined with the sink's first
arrival of it (records.csv beside every latency, throughput and failover run)."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workloads.vei.records import SinkRecord, first_per_frame, read_camera_csv

RECORD_FIELDS = ["frame_id", "created_unix_ns", "gateway_in_unix_ns", "vision_done_unix_ns",
                 "cloud_arrival_unix_ns", "latency_ms", "camera_to_gateway_ms", "gateway_to_vision_ms",
                 "vision_to_cloud_ms", "camera_attempts"]


@dataclass
class FrameRecord:
    frame_id: str
    created_ns: int
    attempts: int = 0
    gateway_in_ns: int | None = None
    vision_done_ns: int | None = None
    cloud_ns: int | None = None

    @property
    def latency_ms(self) -> float | None:
        return None if self.cloud_ns is None else (self.cloud_ns - self.created_ns) / 1e6

    def row(self) -> list[Any]:
        def ms(a: int | None, b: int | None) -> str:
            return "" if a is None or b is None or not a or not b else f"{(b - a) / 1e6:.3f}"
        lat = self.latency_ms
        return [self.frame_id, self.created_ns, self.gateway_in_ns or "", self.vision_done_ns or "",
                self.cloud_ns or "", "" if lat is None else f"{lat:.3f}",
                ms(self.created_ns, self.gateway_in_ns), ms(self.gateway_in_ns, self.vision_done_ns),
                ms(self.vision_done_ns, self.cloud_ns), self.attempts]


def join_records(camera_csv: Path, sink: Sequence[SinkRecord], frame_prefix: str = "") -> list[FrameRecord]:
    """Every frame the camera created, in creation order, with the first arrival the sink saw of it."""
    arrived = first_per_frame(sink, frame_prefix)
    records: list[FrameRecord] = []
    for row in read_camera_csv(camera_csv):
        rec = FrameRecord(row.frame_id, row.created_ns, row.attempts)
        res = arrived.get(rec.frame_id)
        if res is not None:
            rec.gateway_in_ns = res.gateway_in_ns
            rec.vision_done_ns = res.vision_done_ns
            rec.cloud_ns = res.sink_ns
        records.append(rec)
    records.sort(key=lambda r: r.created_ns)
    return records


def write_records(path: Path, records: Iterable[FrameRecord]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(RECORD_FIELDS)
        writer.writerows(r.row() for r in records)
