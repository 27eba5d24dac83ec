"""Pulumi entry point (Pulumi.yaml: `main: infra/`).

Pulumi runs this directory as a script with infra/ itself first on sys.path, which would let
infra/platform shadow the standard library's `platform` module. Drop that entry so every import
goes through the installed `infra` package.
"""

import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
sys.path.insert(0, os.path.dirname(_here))

from infra.config import read_testbed  # noqa: E402
from infra.program import build  # noqa: E402

build(read_testbed())
