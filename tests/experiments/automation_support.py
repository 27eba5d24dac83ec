"""A stand-in for the Pulumi CLI behind pulumi.automation's own seam, `PulumiCommand`.

The Pulumi engine cannot run here, so the stack testbed's engine process is pointed at this class
with EDGERIG_PULUMI_COMMAND=automation_support:make. It answers the CLI invocations the Automation API
makes (stack select, config get, up, stack output, stack history, destroy, stack export) from a
JSON state file named by $EDGERIG_TEST_PULUMI_STATE, writes engine events to the --event-log the
Automation API watches, and records every call so tests can assert what ran. Anything it does not
know fails loudly.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pulumi.automation import CommandResult, PulumiCommand
from pulumi.automation._cmd import OnOutput
from pulumi.automation.errors import create_command_error
from semver import VersionInfo

SECRET = "[secret]"
# File-based engine events: the Automation API serves them over gRPC only from CLI 3.206 on.
VERSION = "3.200.0"


def state_path() -> Path:
    return Path(os.environ["EDGERIG_TEST_PULUMI_STATE"])


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(state_path().read_text())
    return data


def save(state: dict[str, Any]) -> None:
    state_path().write_text(json.dumps(state, indent=2))


def write_state(path: Path, stack: str, outputs: Mapping[str, tuple[Any, bool]], resources: int = 7,
                token: bool = True) -> None:
    """A backend holding `stack`, whose `up` yields `outputs` (name -> (value, secret))."""
    path.write_text(json.dumps({
        "stacks": {stack: {"deployed": False, "token": token, "resources": resources,
                           "outputs": {k: {"value": v, "secret": s} for k, (v, s) in outputs.items()}}},
        "calls": [],
    }, indent=2))


class FakePulumi(PulumiCommand):
    def __init__(self) -> None:  # there is no CLI to find or to check the version of
        self.command = "pulumi"
        self.version = VersionInfo.parse(VERSION)

    def run(self, args: list[str], cwd: str, additional_env: Mapping[str, str],
            on_output: OnOutput | None = None, on_error: OnOutput | None = None) -> CommandResult:
        args = [a for a in args if a != "--non-interactive"]
        state = load()
        state["calls"].append(args)
        save(state)
        try:
            stdout = self._answer(args, state)
        except LookupError as err:
            raise create_command_error(CommandResult(stdout="", stderr=str(err), code=255)) from None
        save(state)
        return CommandResult(stdout=stdout, stderr="", code=0)

    @staticmethod
    def _flag(args: list[str], name: str) -> str:
        return args[args.index(name) + 1]

    def _stack(self, args: list[str], state: dict[str, Any]) -> dict[str, Any]:
        name = self._flag(args, "--stack")
        if name not in state["stacks"]:
            raise LookupError(f"error: no stack named '{name}' found")
        stack: dict[str, Any] = state["stacks"][name]
        return stack

    def _answer(self, args: list[str], state: dict[str, Any]) -> str:
        if args[:2] == ["stack", "select"]:
            self._stack(args, state)
            return ""
        if args[:2] == ["config", "get"]:
            stack = self._stack(args, state)
            if args[2] != "edgerig:k3sToken" or not stack["token"]:
                raise LookupError(f"error: configuration key '{args[2]}' not found for stack")
            return json.dumps({"value": "not-a-real-token", "secret": True})
        if args[0] == "up":
            stack = self._stack(args, state)
            self._events(args, stack["resources"], "create")
            stack["deployed"] = True
            return "Update succeeded"
        if args[0] == "destroy":
            stack = self._stack(args, state)
            self._events(args, stack["resources"], "delete")
            stack["deployed"] = False
            return "Destroy succeeded"
        if args[:2] == ["stack", "output"]:
            stack = self._stack(args, state)
            if not stack["deployed"]:
                return "{}"
            show = "--show-secrets" in args
            return json.dumps({k: (o["value"] if show or not o["secret"] else SECRET)
                               for k, o in stack["outputs"].items()})
        if args[:2] == ["stack", "history"]:
            self._stack(args, state)
            now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
            return json.dumps([{"kind": "update", "startTime": now, "endTime": now, "message": "",
                                "environment": {}, "config": {}, "result": "succeeded"}])
        if args[:2] == ["stack", "export"]:
            stack = self._stack(args, state)
            count = stack["resources"] if stack["deployed"] else 0
            return json.dumps({"version": 3, "deployment": {"resources": [{"urn": f"urn:{i}"}
                                                                          for i in range(count)]}})
        raise LookupError(f"the Pulumi stand-in does not know `pulumi {' '.join(args)}`")

    def _events(self, args: list[str], count: int, op: str) -> None:
        if "--event-log" not in args:
            return
        with open(self._flag(args, "--event-log"), "a", encoding="utf-8") as log:
            for i in range(count):
                meta = {"op": op, "urn": f"urn:pulumi:stack::edgerig::thing::r{i}", "type": "thing",
                        "provider": ""}
                log.write(json.dumps({"sequence": 2 * i, "resourcePreEvent": {"metadata": meta}}) + "\n")
                log.write(json.dumps({"sequence": 2 * i + 1, "resOutputsEvent": {"metadata": meta}}) + "\n")
            log.write(json.dumps({"sequence": 2 * count, "cancelEvent": {}}) + "\n")


def make() -> FakePulumi:
    return FakePulumi()
