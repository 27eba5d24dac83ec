"""Campaigns for real: cells run as `edgerig run` processes on the local testbed, a SIGKILL mid-way
is resumed without redoing finished cells and leaves nothing behind, and the report renders in
headless Chromium with every image loaded."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from testkit import ROOT, assert_nothing_left, marked_processes, run_env, wait_until
from typer.testing import CliRunner

from experiments.cli import app

EDGERIG = [sys.executable, "-m", "experiments"]
CELL = {"frames": 30, "fps": 20, "quiet_s": 0, "floor_frames": 10}


def write_plan(path: Path, out: Path, fps: list[int], **cell: object) -> Path:
    path.write_text(yaml.safe_dump({"name": "t", "out": str(out), "cells": [
        {"experiment": "latency", "targets": ["local"], "params": {**CELL, "fps": fps}, **cell}]}))
    return path






def state(out: Path) -> dict[str, dict[str, object]]:
    data: dict[str, dict[str, object]] = json.loads((out / "campaign.json").read_text())["cells"]
    return data


@pytest.mark.slow
def test_sigkill_mid_way_then_resume_runs_only_the_missing_cells(tmp_path: Path) -> None:
    env, marker, tmp = run_env(tmp_path)
    out = tmp_path / "campaign"
    plan = write_plan(tmp_path / "plan.yaml", out, fps=[20, 25, 30], repeat=2)
    proc = subprocess.Popen([*EDGERIG, "campaign", "run", str(plan)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def second_cell_streams() -> bool:
            return (out / "campaign.json").exists() and bool(
                list((out / "cells").glob("latency-local-*fps25*/r1/camera.csv")))

        try:
            wait_until(second_cell_streams, 120, "the campaign's second cell",
                       alive=lambda: proc.poll() is None, interval_s=0.1)
        except RuntimeError:
            raise AssertionError(proc.communicate()[0].decode()) from None
        proc.kill()  # the campaign alone; its cell dies with it, the cell's children do not
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    before = state(out)
    assert [c["status"] for c in before.values()] == ["done", "running", "pending"]
    time.sleep(1)
    assert marked_processes(marker), "a SIGKILLed run leaves its system processes behind until the sweep"

    status = subprocess.run([*EDGERIG, "campaign", "status", str(plan)], cwd=ROOT, env=env,
                            capture_output=True, text=True, check=True)
    assert "1/3 done" in status.stdout and "running" in status.stdout

    resumed = subprocess.run([*EDGERIG, "campaign", "run", str(plan), "--resume"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=400, check=False)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "1 of 3 cells done, 2 to run" in resumed.stdout
    after = state(out)
    assert [c["status"] for c in after.values()] == ["done", "done", "done"]
    assert [c["attempts"] for c in after.values()] == [1, 2, 1]  # the finished cell was not run again
    sweeps = json.loads((out / "campaign.json").read_text())["sweeps"]
    swept = [item for s in sweeps for item in s["removed"]]
    assert any("pid" in item for item in swept), "the crashed cell's processes were swept"
    for cell in (out / "cells").iterdir():
        assert sorted(p.name for p in cell.iterdir()) == ["aggregate.json", "r1", "r2"]
    assert_nothing_left(marker, tmp)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "site"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


CHECK_PAGE = """<!doctype html><html><body>
<iframe id=f src="campaign/index.html" width=1200 height=900></iframe>
<pre id=result>pending</pre><script>
document.getElementById('f').addEventListener('load', () => {
  const doc = document.getElementById('f').contentDocument;
  const imgs = [...doc.images];
  const wait = imgs.map(i => i.complete ? Promise.resolve()
                                        : new Promise(r => { i.onload = r; i.onerror = r; }));
  Promise.all(wait).then(() => {
    document.getElementById('result').textContent = JSON.stringify({
      title: doc.title, tables: doc.querySelectorAll('table').length, images: imgs.length,
      broken: imgs.filter(i => !(i.naturalWidth > 0)).map(i => i.getAttribute('src'))});
  });
});
</script></body></html>
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="Debian's chromium is installed by bootstrap --dev")
def test_the_report_renders_in_headless_chromium_with_every_image(tmp_path: Path,
                                                                  served: tuple[Path, str]) -> None:
    root, url = served
    out = root / "campaign"
    plan = write_plan(tmp_path / "plan.yaml", out, fps=[20, 40])
    result = subprocess.run([*EDGERIG, "campaign", "run", str(plan)], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    aggregate = json.loads((out / "aggregate.json").read_text())
    rows = aggregate["latency"]
    assert [r["params"]["fps"] for r in rows] == [20, 40] and all(r["runs"] == 1 for r in rows)
    assert all(r["p50_ms"]["median"] > 0 for r in rows)
    (root / "check.html").write_text(CHECK_PAGE)
    profile = tmp_path / "chromium-profile"
    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom", f"{url}/check.html"],
        capture_output=True, text=True, timeout=120, check=False)
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout.split('<pre id="result">', 1)[1].split("</pre>", 1)[0]
    found = json.loads(text.replace("&quot;", '"'))
    assert found["title"] == "edgerig campaign t" and found["tables"] == 1
    assert found["images"] == 2 and found["broken"] == []  # one CDF plot per run


def test_bad_plans_are_refused_before_anything_runs(tmp_path: Path) -> None:
    out = tmp_path / "campaign"
    runner = CliRunner()
    local = {"experiment": "latency", "targets": ["local"]}
    cases = [
        ({**local, "experiment": "latncy"}, "unknown experiment 'latncy'"),
        ({**local, "params": {"framez": 3}}, "No such option: --framez"),
        ({**local, "params": {"frames": "many"}}, "Input should be a valid integer"),
        ({**local, "targets": ["nowhere"]}, "no stack file stacks/Pulumi.nowhere.yaml"),
        ({**local, "params": {"out": "x"}}, "the campaign chooses --out"),
        ({**local, "repeat": 0}, "greater than or equal to 1"),
    ]
    for cell, message in cases:
        plan = tmp_path / "plan.yaml"
        plan.write_text(yaml.safe_dump({"name": "t", "out": str(out), "cells": [cell]}))
        result = runner.invoke(app, ["campaign", "run", str(plan)])
        assert result.exit_code == 2, (cell, result.output)
        assert message in " ".join(result.output.split()), (cell, result.output)
        assert not out.exists()
    (tmp_path / "empty.yaml").write_text("name: t\ncells: []\n")
    result = runner.invoke(app, ["campaign", "run", str(tmp_path / "empty.yaml")])
    assert result.exit_code == 2 and "cells" in result.output


def test_a_campaign_with_progress_needs_resume(tmp_path: Path) -> None:
    out = tmp_path / "campaign"
    plan = write_plan(tmp_path / "plan.yaml", out, fps=[20])
    out.mkdir()
    (out / "campaign.json").write_text(json.dumps({"plan": "t", "plan_sha256": "x", "sweeps": [], "cells": {
        "latency-local-frames30-fps20-quiet_s0-floor_frames10": {"status": "done", "attempts": 1}}}))
    result = CliRunner().invoke(app, ["campaign", "run", str(plan)])
    assert result.exit_code == 2
    assert "run it again with --resume" in " ".join(result.output.split())
