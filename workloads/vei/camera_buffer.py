"""The camera's bounded buffer of frames sent but not yet acknowledged by the sink."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from workloads.vei.proto import vei_pb2


@dataclass
class Pending:
    msg: vei_pb2.PubImageParams
    created_ns: int
    attempts: int = 0        # transmissions so far
    last_sent: float = 0.0   # time.monotonic() of the last transmission (or resend decision)


class PendingFrames:
    """Unacked frames in creation order; adding to a full buffer drops the oldest."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("the camera buffer must hold at least one frame")
        self.capacity = capacity
        self._frames: OrderedDict[str, Pending] = OrderedDict()

    def __len__(self) -> int:
        return len(self._frames)

    def add(self, frame_id: str, msg: vei_pb2.PubImageParams, created_ns: int) -> int:
        """Buffer a new frame; returns how many old frames had to be dropped to make room."""
        dropped = 0
        while len(self._frames) >= self.capacity:
            self._frames.popitem(last=False)
            dropped += 1
        self._frames[frame_id] = Pending(msg, created_ns)
        return dropped

    def get(self, frame_id: str) -> Pending | None:
        return self._frames.get(frame_id)

    def pop(self, frame_id: str) -> Pending | None:
        return self._frames.pop(frame_id, None)

    def ids(self) -> list[str]:
        return list(self._frames)

    def items(self) -> Iterator[tuple[str, Pending]]:
        return iter(list(self._frames.items()))

    def stale(self, sent_before: float) -> list[str]:
        """Frames transmitted before `sent_before` and still unacked, oldest first.

        Marks them as just (re)scheduled, so a frame waiting in a slow outbox is not queued twice.
        """
        out: list[str] = []
        now = time.monotonic()
        for frame_id, entry in self._frames.items():
            if entry.attempts and entry.last_sent < sent_before:  # attempts == 0: first send pending
                out.append(frame_id)
                entry.last_sent = now
        return out
