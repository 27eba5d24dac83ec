"""The four thesis functions (OpenFaaS/KubeEdge thesis, Table 5.2) and the request each one gets.

One place names them, with their requests, for everything that serves or calls them: the load
generator (load.py), the testbeds that deploy them, the FaaS experiment and the image catalog
(workloads/images/catalog.py, one image per function from this table). The requests follow the
thesis's method (5.1, 5.3):

- nodeinfo: a plain request; the answer names the host (the pod) that served it;
- gzip-compression: a plain request; the function makes its own 10 MB of random data and gzips it;
- dd: a plain request; the function copies a 128-byte block 10 times with dd;
- shasum: 1 MB of random data in the body.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

SHASUM_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class FunctionInfo:
    name: str                 # the OpenFaaS function name (as in stack.yaml)
    package: str              # workloads/functions/<package>/handler.py
    method: str               # the request the thesis sends
    body_bytes: int           # random body bytes per request (0 = no body)
    thesis_users: int         # the virtual users the thesis ramped to (shasum was cut to 10: timeouts)
    purpose: str
    debian_packages: tuple[str, ...] = ()   # what its image needs beyond Python (dd runs the dd binary)

    @property
    def module(self) -> str:
        """The handler module (python3-http template: `function.handler`)."""
        return f"workloads.functions.{self.package}.handler"

    def body(self) -> bytes:
        """A request body as the thesis sends it (random data, made once per virtual user)."""
        return os.urandom(self.body_bytes) if self.body_bytes else b""


FUNCTIONS: dict[str, FunctionInfo] = {
    f.name: f for f in (
        FunctionInfo("nodeinfo", "nodeinfo", "GET", 0, 20, "CPU under heavy load"),
        FunctionInfo("gzip-compression", "gzip_compression", "GET", 0, 20, "memory and CPU"),
        FunctionInfo("dd", "dd", "GET", 0, 20, "disk I/O", debian_packages=("coreutils",)),
        FunctionInfo("shasum", "shasum", "POST", SHASUM_BODY_BYTES, 10, "network I/O and CPU"),
    )
}


def function(name: str) -> FunctionInfo:
    """The function called `name`; the error lists the ones there are."""
    try:
        return FUNCTIONS[name]
    except KeyError:
        raise ValueError(f"unknown function {name!r}: use one of {', '.join(FUNCTIONS)}") from None
