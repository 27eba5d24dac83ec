"""One JSON line per accepted result, de-duplicated on (cameraID, frameId), also across restarts on
the same file. Used by the local sink process and by the gateway's own `file:` sink.

The stats file beside it (`<out>.stats.json`) is complete when the recorder closes, and its
duplicate count is current at any time: it is rewritten on every duplicate (rare: a resent frame),
so a run can read it while the gateway that records is still up."""

from __future__ import annotations

import contextlib
import json
from collections import OrderedDict
from pathlib import Path
from typing import IO, Any

from workloads.vei.proto import vei_pb2
from workloads.vei.sinks.base import result_record


class ResultRecorder:
    """Writes results to a JSONL file, remembering recent keys to drop duplicates."""

    def __init__(self, out: Path, window: int) -> None:
        self.out = out
        self.accepted = 0
        self.duplicates = 0
        self._window = window
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        out.parent.mkdir(parents=True, exist_ok=True)
        self._remember_existing()
        self._file: IO[str] = out.open("a", encoding="utf-8")

    def _remember_existing(self) -> None:
        """A restarted sink appends to its file and must not re-record what is already there."""
        if not self.out.exists():
            return
        with self.out.open(encoding="utf-8") as f:
            for line in f:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    rec = json.loads(line)
                    if rec["frameId"]:
                        self._remember((rec["cameraID"], rec["frameId"]))

    def _remember(self, key: tuple[str, str]) -> None:
        self._seen[key] = None
        if len(self._seen) > self._window:
            self._seen.popitem(last=False)

    def record(self, result: vei_pb2.PubCloudParams, arrived_ns: int) -> bool:
        """Returns False for a duplicate (not written)."""
        key = (result.cameraID, result.frameId)
        if result.frameId and key in self._seen:
            self.duplicates += 1
            self._write_stats()
            return False
        rec: dict[str, Any] = result_record(result)
        rec["sinkUnixNs"] = arrived_ns
        self._file.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self._file.flush()
        if result.frameId:
            self._remember(key)
        self.accepted += 1
        return True

    def close(self) -> None:
        self._file.close()
        self._write_stats()

    def _write_stats(self) -> None:
        stats = {"accepted": self.accepted, "duplicates": self.duplicates}
        stats_path(self.out).write_text(json.dumps(stats) + "\n", encoding="utf-8")


def stats_path(out: Path) -> Path:
    return out.with_name(out.name + ".stats.json")
