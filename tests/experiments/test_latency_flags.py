"""Bad options of `edgerig run latency|throughput` fail with a clear message before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from experiments.cli import app


@pytest.mark.parametrize("args, message", [
    (["--fps", "0"], "--fps must be > 0"),
    (["--fps", "-5"], "--fps must be > 0"),
    (["--frames", "0"], "--frames must be > 0"),
    (["--frame-bytes", "0"], "--frame-bytes must be in 1..4194304"),
    (["--frame-bytes", str(4 * 1024 * 1024 + 1)], "the gateway's maximum image size"),
    (["--floor-frames", "0"], "--floor-frames must be > 0"),
    (["--processing-ms", "-1"], "--processing-ms must be >= 0"),
    (["--target", "lab-openstack"], "no stack file stacks/Pulumi.lab-openstack.yaml"),
    (["--target", "emulated:zero"], "the node count after 'emulated:' must be a positive number"),
    (["--repeat", "0"], "--repeat must be >= 1"),
    (["--rebuild", "sometimes"], "--rebuild must be one of each-run, once, never"),
    (["--rebuild", "never"], "--rebuild never uses an already deployed Pulumi stack"),
    (["--quiet-s", "-1"], "--quiet-s must be >= 0"),
    (["--sink", "cloud"], "--sink must be one of auto, gateway, process"),
    (["--sink", "gateway", "--rebuild", "once"], "--sink gateway needs --rebuild each-run"),
    (["--sink", "gateway", "--target", "emulated:3"], "--sink gateway needs the local testbed"),
])
def test_bad_latency_flags(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "results"
    result = CliRunner().invoke(app, ["run", "latency", "--out", str(out), "--no-progress", *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not out.exists()  # nothing was started or created


def test_existing_results_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "old.json").write_text("{}")
    result = CliRunner().invoke(app, ["run", "latency", "--out", str(tmp_path), "--no-progress"])
    assert result.exit_code == 2
    assert "already exists and is not an empty directory" in " ".join(result.output.split())


@pytest.mark.parametrize("args, message", [
    (["--rates", "100,50"], "--rates must increase"),
    (["--rates", "100,-1"], "--rates must be positive"),
    (["--rates", "fast"], "--rates must be numbers"),
    (["--step-seconds", "0"], "--step-seconds must be > 0"),
    (["--p95-limit-ms", "0"], "--p95-limit-ms must be > 0"),
    (["--frame-bytes", "99999999"], "--frame-bytes must be in"),
    (["--target", "prod"], "no stack file stacks/Pulumi.prod.yaml"),
    (["--sink", "gateway", "--rebuild", "once"], "--sink gateway needs --rebuild each-run"),
])
def test_bad_throughput_flags(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "tp"
    result = CliRunner().invoke(app, ["run", "throughput", "--out", str(out), "--no-progress", *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not out.exists()


def test_throughput_flag_of_latency_goes_to_the_ramp(tmp_path: Path) -> None:
    out = tmp_path / "tp"
    result = CliRunner().invoke(app, ["run", "latency", "--throughput", "--frame-bytes", "0",
                                      "--out", str(out), "--no-progress"])
    assert result.exit_code == 2
    assert "--frame-bytes must be in" in " ".join(result.output.split())
    assert not out.exists()


def test_a_stack_target_without_the_pulumi_cli_fails_at_once_and_creates_nothing(tmp_path: Path) -> None:
    """No Pulumi CLI on this machine: `--target pi-k3s` must say so before anything else happens (no
    engine process, no journal, no results folder), naming how to install it. How long that takes
    is measured in docs/benchmarks.md, not here."""
    import os
    import subprocess
    import sys

    out = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if k not in ("EDGERIG_PULUMI_COMMAND", "EDGERIG_PULUMI_ROOT")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not (Path(p) / "pulumi").exists())
    done = subprocess.run([sys.executable, "-m", "experiments", "run", "latency", "--target", "pi-k3s",
                           "--out", str(out), "--no-progress"], capture_output=True, text=True, env=env,
                          timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    message = " ".join(done.stderr.split())
    assert "needs the Pulumi CLI, which is not installed here" in message
    assert "https://www.pulumi.com/docs/install/" in message and "Nothing was created" in message
    assert "pulumi up" not in message and "stack_engine" not in message  # stopped before the engine
    assert not out.exists()
