"""What a process loads before it does anything: every `edgerig` command starts the CLI, and a test
run or campaign starts hundreds of them and of gateways. The Kubernetes SDK (~0.6 s) belongs only to
`edgerig stack render`, and boto3 (~0.1 s, ~9 MB) only to gateways with an AWS cloud."""

from __future__ import annotations

import subprocess
import sys

import pytest
from testkit import ROOT


def loaded_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in out.stdout.split()}


@pytest.mark.parametrize(("statement", "absent"), [
    ("import experiments.cli", {"pulumi_kubernetes", "pulumi"}),
    ("import workloads.vei.gateway", {"boto3", "botocore"}),
])
def test_start_up_does_not_load_what_it_does_not_use(statement: str, absent: set[str]) -> None:
    assert not loaded_after(statement) & absent


def test_an_aws_cloud_still_loads_its_sdk_when_built() -> None:
    statement = ("from workloads.vei.sinks.factory import build_sink\n"
                 "from workloads.vei.sinks.spec import parse_cloud_specs\n"
                 "spec = parse_cloud_specs(['aws=iot-data?region=eu-north-1&topic=vei/results'])[0]\n"
                 "build_sink(spec, None, 1.0, 4)")
    assert "boto3" in loaded_after(statement)
