"""infra/__main__.py as Pulumi runs it, the config declarations in Pulumi.yaml, and the dashboards."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from stack_fixtures import ROOT, STACK_FILES, TOKEN

from infra.config import DECLARED_KEYS
from infra.model import SECRET_KEYS

SCRIPT = Path(__file__).with_name("run_main_under_mocks.py")
ALLOWED_TYPES = {"string", "integer", "boolean", "array"}  # Pulumi project schema: simpleConfigType


def run_main(stack_file: Path, token: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(stack_file), token],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_main_runs_the_program_from_stack_config_without_shadowing_stdlib() -> None:
    out = run_main(ROOT / "stacks/Pulumi.pi-k3s.yaml", TOKEN)
    assert int(str(out["resources"])) > 20
    assert not str(out["platform_module"]).startswith(
        str(ROOT / "infra")
    )  # stdlib platform, not infra/platform
    assert out["infra_dir_on_path"] is False


def test_bad_stack_config_fails_before_any_resource() -> None:
    out = run_main(ROOT / "stacks/Pulumi.hybrid.yaml", "-")
    assert "edgerig:k3sToken is missing" in str(out["error"])
    assert out["resources"] == 0


def _stack_variant(tmp_path: Path, name: str, **config: Any) -> Path:
    doc = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{name}.yaml").read_text())
    doc["config"].update({f"edgerig:{k}": v for k, v in config.items()})
    path = tmp_path / f"Pulumi.{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_kubeedge_release_outside_the_compatibility_table_fails_before_any_resource(tmp_path: Path) -> None:
    out = run_main(
        _stack_variant(tmp_path, "hybrid", kubeedge={"enabled": True, "version": "v1.15.0"}), TOKEN
    )
    assert "edgerig:kubeedge.version v1.15.0 does not support Kubernetes 1.30" in str(out["error"])
    assert "unknown release" in str(out["error"]) and out["resources"] == 0


def test_edge_functions_without_edgemesh_fail_before_any_resource(tmp_path: Path) -> None:
    no_mesh = {"enabled": True, "edgemesh": {"enabled": False}}
    out = run_main(_stack_variant(tmp_path, "openstack-kubeedge", kubeedge=no_mesh), TOKEN)
    assert "asks for functions on the edge" in str(out["error"]) and out["resources"] == 0


def test_unpinned_keadm_fails_before_any_resource() -> None:
    """With the shipped pins (no published keadm sha512 on record yet) a KubeEdge stack installs nothing."""
    out = run_main(ROOT / "stacks/Pulumi.hybrid.yaml", TOKEN)
    assert "keadm-v1.20.0-linux-arm64.tar.gz: add its sha512 from checksum_keadm" in str(out["error"])
    assert "edgerig artefacts pin --from MIRROR" in str(out["error"]) and out["resources"] == 0


def test_pulumi_yaml_declares_every_key_with_a_description() -> None:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert (
        project["name"] == "edgerig" and project["main"] == "infra/" and project["stackConfigDir"] == "stacks"
    )
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": ".venv"}}
    declared = project["config"]
    assert {k.removeprefix("edgerig:") for k in declared} == set(DECLARED_KEYS)
    for key, decl in declared.items():
        assert len(decl.get("description", "")) > 20, key
        assert set(decl) <= {"type", "items", "description", "secret", "default"}, key
        if "type" in decl:
            assert decl["type"] in ALLOWED_TYPES, key
            if decl["type"] == "array":
                assert decl["items"]["type"] in ALLOWED_TYPES, key
        assert decl.get("secret", False) == (key.removeprefix("edgerig:") in SECRET_KEYS), key


def test_stack_files_use_only_declared_keys() -> None:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    for path in STACK_FILES:
        config = yaml.safe_load(path.read_text())["config"]
        unknown = set(config) - set(project["config"])
        assert not unknown, f"{path.name}: {unknown}"
        assert not set(config) & {f"edgerig:{k}" for k in SECRET_KEYS}, (
            f"{path.name} holds a secret in plain text"
        )


def test_dashboard_queries_name_metrics_the_gateway_exports() -> None:
    dashboard = json.loads((ROOT / "infra/dashboards/vei.json").read_text())
    exported = set(re.findall(r'"(vei_[a-z_]+)"', (ROOT / "workloads/vei/metrics.py").read_text()))
    used = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= set(
                re.findall(
                    r"\b(vei_[a-z_]+?)(?:_bucket|_total|_count|_sum)?\b[\[{(\s)]", target["expr"] + " "
                )
            )
    assert used and used <= exported, used - exported
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    assert "latency" in titles and "cpu" in titles and "memory" in titles
