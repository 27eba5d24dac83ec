"""Testbeds: where the system under test runs, behind one interface (see base.py).

Targets, as `--target` takes them:

    local               the baseline system as processes on this machine (the default)
    emulated[:N]        N network-namespace nodes (default 5), root only
    fleet[:N]           N local SSH test hosts (default 3), root only; faults go over SSH
    stack:NAME | NAME   the Pulumi stack stacks/Pulumi.NAME.yaml, through the Automation API
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from experiments.testbeds.base import Progress, SystemSpec, Testbed, TestbedError

REPO = Path(__file__).resolve().parents[2]
STACKS_DIR = REPO / "stacks"
KINDS = ("local", "emulated", "fleet", "stack")


@dataclass(frozen=True)
class TargetSpec:
    """A parsed --target: its kind, and its node count or stack name."""

    text: str
    kind: str
    nodes: int | None = None
    stack: str | None = None

    @property
    def stack_file(self) -> Path | None:
        return STACKS_DIR / f"Pulumi.{self.stack}.yaml" if self.stack else None


def known_stacks() -> list[str]:
    return sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml")
                  for p in STACKS_DIR.glob("Pulumi.*.yaml"))


def parse_target(text: str) -> TargetSpec:
    """Check a --target before anything is built; the error lists what is possible."""
    kind, sep, arg = text.strip().partition(":")
    if kind in ("local",) and not sep:
        return TargetSpec(text, "local")
    if kind in ("emulated", "fleet"):
        if not sep:
            return TargetSpec(text, kind)
        if arg.isdigit() and int(arg) >= 1:
            return TargetSpec(text, kind, nodes=int(arg))
        raise TestbedError(f"--target {text!r}: the node count after '{kind}:' must be a positive number, "
                           f"e.g. {kind}:5")
    name = arg if kind == "stack" and sep else (text if not sep else "")
    if name and (STACKS_DIR / f"Pulumi.{name}.yaml").exists():
        return TargetSpec(text, "stack", stack=name)
    stacks = ", ".join(known_stacks()) or "none"
    if name:
        raise TestbedError(f"--target {text!r}: no stack file stacks/Pulumi.{name}.yaml; "
                           f"stacks here: {stacks}; or use local, emulated[:N], fleet[:N]")
    raise TestbedError(f"--target {text!r} is not a testbed: use local, emulated[:N], fleet[:N], "
                       f"stack:NAME or a stack name ({stacks})")


def make_testbed(target: TargetSpec | str, spec: SystemSpec, *, log_dir: Path | None = None,
                 progress: Progress | None = None, attach: bool = False) -> Testbed:
    """The testbed for a target; nothing is built until `up()` (or `with`)."""
    t = parse_target(target) if isinstance(target, str) else target
    if attach and t.kind != "stack":
        raise TestbedError(f"only a deployed Pulumi stack can be used as it is; a {t.kind} testbed is built "
                           "for each run")
    if t.kind == "local":
        from experiments.testbeds.local import LocalTestbed
        return LocalTestbed(spec, log_dir, progress)
    if t.kind == "emulated":
        from experiments.testbeds.emulated import EmulatedTestbed
        return EmulatedTestbed(replace(spec, nodes=t.nodes) if t.nodes else spec, log_dir, progress)
    if t.kind == "fleet":
        from experiments.testbeds.fleet.testbed import FleetTestbed
        return FleetTestbed(replace(spec, nodes=t.nodes or 3), log_dir, progress)
    from experiments.testbeds.stack import StackTestbed
    assert t.stack is not None
    return StackTestbed(t.stack, spec, log_dir, progress, attach=attach, kill_mode=spec.kill_mode)


__all__ = ["KINDS", "SystemSpec", "TargetSpec", "Testbed", "TestbedError", "make_testbed", "parse_target"]
