"""File sink: the gateway records results itself, one JSON line each, in the local sink's format.

The original VEI delivered results from the gateway process straight to the cloud; this sink does
the same for a file, with no separate process and no NATS hop: a result is written and flushed, and
its frame acknowledged, inside the PublishToCloud call. Every gateway replica writes its own file
(de-duplicated per file), so it suits one gateway (the baseline system) or per-replica records; for
one shared record of several replicas use `local` and the sink process.
"""

from __future__ import annotations

import time
from pathlib import Path

from workloads.vei.proto import vei_pb2
from workloads.vei.sinks.base import CloudSink, SinkError
from workloads.vei.sinks.recorder import ResultRecorder


class FileSink(CloudSink):
    kind = "file"
    inline = True

    def __init__(self, name: str, path: str, dedup_window: int = 1_000_000) -> None:
        super().__init__(name)
        self.path = Path(path)
        self._window = dedup_window
        self._recorder: ResultRecorder | None = None
        self._problem = "not started"

    async def start(self) -> None:
        try:
            self._recorder = ResultRecorder(self.path, self._window)
        except OSError as exc:  # results then fail with this reason; the gateway still starts
            self._problem = f"cannot open {self.path}: {exc.strerror or exc}"

    async def deliver(self, result: vei_pb2.PubCloudParams) -> None:
        if self._recorder is None:
            raise SinkError(f"file sink {self.name!r}: {self._problem}")
        try:
            self._recorder.record(result, time.time_ns())
        except OSError as exc:
            raise SinkError(f"file sink {self.name!r} cannot write {self.path}: "
                            f"{exc.strerror or exc}") from exc

    async def accepting(self) -> bool:
        return self._recorder is not None

    async def close(self) -> None:
        if self._recorder is not None:
            self._recorder.close()
            self._recorder = None

    def describe(self) -> str:
        return f"file {self.path}"
