"""The Pulumi Automation API, run as its own short-lived process for the stack testbed:

    python -m experiments.testbeds.stack_engine {check|up|outputs|destroy|resources} STACK

prints one JSON object per line on stdout: `{"event": "step", ...}` while the engine works (from its
engine events: resources done / started), then one result line, `{"result": ...}` or
`{"error": "..."}` (exit 2 for a missing prerequisite, 1 for a failed operation).

Why a process: pulumi.automation loads gRPC (it serves the engine's event stream over gRPC), and a
process that has loaded gRPC can hang in gRPC's fork handler when it later forks; the testbed's
orchestrator forks the camera, the sink and more (see experiments/testbeds/probe.py).

The CLI is found as pulumi.automation finds it: `pulumi` on PATH, or under $EDGERIG_PULUMI_ROOT
(an install root with bin/pulumi). $EDGERIG_PULUMI_COMMAND=module:callable names a callable that
returns a pulumi.automation.PulumiCommand instead - a pinned CLI wrapper, or a test's stand-in for
the engine, which is the Automation API's own seam.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
INSTALL_HINT = ("install it with `curl -fsSL https://get.pulumi.com | sh` "
                "(https://www.pulumi.com/docs/install/), "
                "log in to a state backend (`pulumi login --local` works), and run again")


class Missing(Exception):
    """A prerequisite is missing; the message names it and how to provide it."""


def emit(**data: Any) -> None:
    print(json.dumps(data, default=str), flush=True)


def pulumi_command() -> Any:
    from pulumi import automation as auto

    factory = os.environ.get("EDGERIG_PULUMI_COMMAND")
    if factory:
        module, _, name = factory.partition(":")
        return getattr(importlib.import_module(module), name)()
    root = os.environ.get("EDGERIG_PULUMI_ROOT")
    try:
        return auto.PulumiCommand(root=root) if root else auto.PulumiCommand()
    except FileNotFoundError:
        where = f"{root}/bin/pulumi" if root else "`pulumi` on PATH"
        raise Missing(f"the Pulumi CLI is not installed ({where} not found): {INSTALL_HINT}") from None


def select(stack_name: str) -> Any:
    from pulumi import automation as auto

    cmd = pulumi_command()
    ws = auto.LocalWorkspace(work_dir=str(REPO), pulumi_command=cmd)
    try:
        return auto.Stack.select(stack_name, ws)
    except auto.StackNotFoundError:
        raise Missing(f"the Pulumi stack {stack_name!r} does not exist in the logged-in backend: run "
                      f"`pulumi stack init {stack_name}` in {REPO} (its settings are in "
                      f"stacks/Pulumi.{stack_name}.yaml), then set its secrets as the README shows") from None


def check(stack: Any) -> dict[str, Any]:
    """What `pulumi up` needs beyond the stack file: the cluster token secret."""
    from pulumi import automation as auto

    try:
        stack.get_config("edgerig:k3sToken")
    except auto.CommandError:
        raise Missing(f"the stack {stack.name!r} has no edgerig:k3sToken: run "
                      "`pulumi config set --secret edgerig:k3sToken \"$(openssl rand -hex 32)\"`") from None
    return {"stack": stack.name}


class Progress:
    """Engine events -> step lines: how many resources are done of those started."""

    def __init__(self) -> None:
        self.started: set[str] = set()
        self.done: set[str] = set()

    def __call__(self, event: Any) -> None:
        pre, out, failed = event.resource_pre_event, event.res_outputs_event, event.res_op_failed_event
        if pre is not None and pre.metadata.op != "same":
            self.started.add(pre.metadata.urn)
            op = pre.metadata.op
            emit(event="step", op=str(op.value if hasattr(op, "value") else op),
                 urn=pre.metadata.urn, done=len(self.done), started=len(self.started))
        elif out is not None and out.metadata.urn in self.started:
            self.done.add(out.metadata.urn)
            emit(event="step", op="done", urn=out.metadata.urn, done=len(self.done),
                 started=len(self.started))
        elif failed is not None:
            emit(event="step", op="failed", urn=failed.metadata.urn, done=len(self.done),
                 started=len(self.started))


def outputs(stack: Any) -> dict[str, Any]:
    return {k: {"value": v.value, "secret": v.secret} for k, v in stack.outputs().items()}


def resources(stack: Any) -> int:
    deployment = stack.export_stack().deployment or {}
    return len(deployment.get("resources") or [])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.testbeds.stack_engine")
    parser.add_argument("operation", choices=("check", "up", "outputs", "destroy", "resources"))
    parser.add_argument("stack")
    args = parser.parse_args(argv)
    try:
        stack = select(args.stack)
        check(stack)
        if args.operation == "check":
            result: Any = {"stack": args.stack}
        elif args.operation == "up":
            stack.up(on_event=Progress(), color="never")
            result = {"outputs": outputs(stack)}
        elif args.operation == "outputs":
            result = {"outputs": outputs(stack)}
        elif args.operation == "destroy":
            stack.destroy(on_event=Progress(), color="never")
            result = {"resources": resources(stack)}
        else:
            result = {"resources": resources(stack)}
    except Missing as err:
        emit(error=str(err))
        return 2
    except Exception as err:  # the engine's own failure: pass its message on whole
        emit(error=f"pulumi {args.operation} {args.stack} failed: {err}")
        return 1
    emit(result=result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
