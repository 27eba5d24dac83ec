"""Run the Pulumi program under pulumi.runtime.set_mocks and record every resource it registers.

Only the Pulumi engine, OpenStack and Kubernetes are mocked: the program, the model and the
rendering code run for real.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.sync_await import _sync_await

from infra.model import Testbed
from infra.program import Program, build

FAKE_KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\n# fake kubeconfig from the mocks\n"


@dataclass
class Registered:
    typ: str
    name: str
    inputs: dict[str, Any]
    parent: str | None


class RecordingMonitor(MockMonitor):
    """Also records each registration's parent and explicit dependencies (MockResourceArgs has neither)."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.recording = mocks

    def RegisterResource(self, request: Any) -> Any:  # the gRPC method name, hence CamelCase
        self.recording.parents[request.name] = request.parent or None
        self.recording.dependencies[request.name] = list(request.dependencies)
        return super().RegisterResource(request)


@dataclass
class RecordingMocks(pulumi.runtime.Mocks):
    resources: list[Registered] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    parents: dict[str, str | None] = field(default_factory=dict)  # resource name -> parent URN
    dependencies: dict[str, list[str]] = field(default_factory=dict)  # resource name -> URNs
    _ip: int = 10

    def depends_on(self, name: str, other: str) -> bool:
        """`other` is a resource name or a component (the SDK expands a component to its children)."""
        names = [urn.rsplit("::", 1)[-1] for urn in self.dependencies.get(name, [])]
        return any(n == other or (n.startswith(f"{other}-") and self.parent_name(n) == other) for n in names)

    def parent_name(self, name: str) -> str | None:
        parent = self.parents.get(name)
        return parent.rsplit("::", 1)[-1] if parent else None

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        self.resources.append(Registered(args.typ, args.name, dict(args.inputs), None))
        outs = dict(args.inputs)
        if args.typ == "pulumi-python:dynamic:Resource":
            outs["kubeconfig"] = FAKE_KUBECONFIG if args.inputs.get("wants_kubeconfig") else ""
        elif args.typ == "openstack:networking/floatingIp:FloatingIp":
            self._ip += 1
            outs["address"] = f"203.0.113.{self._ip}"
        elif args.typ == "openstack:networking/port:Port":
            self._ip += 1
            outs["allFixedIps"] = [f"192.168.50.{self._ip}"]
        elif args.typ == "random:index/randomPassword:RandomPassword":
            outs["result"] = "mock-password-" + args.name
        elif args.typ == "random:index/randomBytes:RandomBytes":  # a fixed seed per resource name
            seed = hashlib.sha256(args.name.encode()).digest()[: int(args.inputs["length"])]
            outs.update(base64=base64.b64encode(seed).decode(), hex=seed.hex())
        return f"{args.name}-id", outs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        self.calls.append(args.token)
        return {"id": f"{args.token}-id", "name": args.args.get("name")}, []

    def of_type(self, typ: str) -> list[Registered]:
        return [r for r in self.resources if r.typ == typ]

    def named(self, name: str) -> Registered:
        (found,) = [r for r in self.resources if r.name == name]
        return found


@dataclass
class Run:
    mocks: RecordingMocks
    program: Program
    outputs: dict[str, Any]  # resolved values
    secret: dict[str, bool]  # output name -> is it a secret

    def count(self, typ: str) -> int:
        return len(self.mocks.of_type(typ))


def _ensure_event_loop() -> None:
    """Pulumi's mocks schedule work on the main thread's current loop. A test elsewhere in the run
    that used asyncio.run() leaves the thread with none, so give the program a fresh one."""
    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
        if not loop.is_closed():
            return
    except RuntimeError:
        pass
    asyncio.set_event_loop(asyncio.new_event_loop())


def run_program(testbed: Testbed) -> Run:
    _ensure_event_loop()
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(
        mocks, project="edgerig", stack=testbed.name, preview=False, monitor=RecordingMonitor(mocks)
    )
    holder: dict[str, Program] = {}

    @pulumi.runtime.test
    def _run() -> pulumi.Output[Any]:
        holder["program"] = build(testbed)
        outs = holder["program"].outputs
        return pulumi.Output.all(*[pulumi.Output.from_input(v) for v in outs.values()])

    _run()
    program = holder["program"]
    resolved: dict[str, Any] = {}
    secret: dict[str, bool] = {}
    for key, value in program.outputs.items():
        out = pulumi.Output.from_input(value)
        resolved[key] = _sync_await(out.future())
        secret[key] = _sync_await(out.is_secret())
    return Run(mocks, program, resolved, secret)


def dynamic_inputs(reg: Registered) -> dict[str, Any]:
    """A HostInstall's inputs as the dynamic provider would receive them."""
    return {k: v for k, v in reg.inputs.items() if k != "__provider"}


SECRET_SIG = rpc._special_secret_sig  # how the engine marks a secret value on the wire


def is_secret_value(value: Any) -> bool:
    return isinstance(value, dict) and value.get(rpc._special_sig_key) == SECRET_SIG


def unwrap(value: Any) -> Any:
    return value["value"] if is_secret_value(value) else value


def decoded_secrets(reg: Registered) -> dict[str, str]:
    return dict(json.loads(unwrap(reg.inputs["secrets"])))
