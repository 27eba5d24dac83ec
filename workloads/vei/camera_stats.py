"""The camera's counters, its live status file and its final stats line."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class CameraStats:
    sent: int = 0               # distinct frames created and queued for sending
    acked: int = 0
    resent: int = 0             # extra transmissions (after a failover or a resend timeout)
    dropped_overflow: int = 0   # oldest unacked frames dropped because the buffer was full
    error_acks: int = 0         # acks saying the result did not reach the sink; resent after the timeout
    unacked: int = 0            # still unacknowledged when the camera stopped
    reconnects: int = 0
    late_sends: int = 0         # frames created more than one interval after their schedule
    error: str = ""             # why the camera gave up, if it did
    cpu_ms: float = 0.0         # this process's CPU from the first frame on (start-up excluded)

    def final_line(self) -> str:
        """The last stdout line: what a run (or an operator) reads to know nothing was dropped silently."""
        return json.dumps({"event": "camera-stats", **asdict(self)})

    def write_status(self, path: Path, final: bool) -> None:
        """Replace `path` atomically, so a reader never sees half a file."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"final": final, **asdict(self)}))
        os.replace(tmp, path)
