"""The one error type host configuration raises, and what a run reports back."""

from __future__ import annotations

from dataclasses import dataclass, field


class HostStepError(RuntimeError):
    """A step failed on a host: names the host, the step and the tool's own message."""

    def __init__(self, host: str, step: str, message: str) -> None:
        self.host, self.step, self.tool_message = host, step, message.strip()
        super().__init__(f"host {host}: step '{step}' failed: {self.tool_message or '(no output)'}")


@dataclass
class RunSummary:
    changed: dict[str, int] = field(default_factory=dict)  # host -> changes counted by the tool itself
    notes: dict[str, list[str]] = field(default_factory=dict)  # host -> skipped steps and why

    def merge(self, other: RunSummary) -> None:
        for host, n in other.changed.items():
            self.changed[host] = self.changed.get(host, 0) + n
        for host, lines in other.notes.items():
            self.notes.setdefault(host, []).extend(lines)
