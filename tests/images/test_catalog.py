"""The faas-cli stack file and the image catalogue name the same functions and the same images."""

from __future__ import annotations

import yaml
from testkit import ROOT

from workloads.images import build, catalog


def test_stack_file_functions_take_their_images_from_the_catalogue() -> None:
    stack = yaml.safe_load((ROOT / "workloads/functions/stack.yaml").read_text())
    functions = stack["functions"]
    assert set(functions) == set(catalog.FUNCTIONS)
    for name, spec in functions.items():
        assert spec["lang"] == "python3-http"
        assert spec["image"] == "${" + catalog.function_env_var(name) + "}"
        package = spec["handler"].removeprefix("./")
        image = catalog.FUNCTIONS[name]
        assert f"workloads/functions/{package}" in image.code
        assert image.cmd[-1] == f"workloads.functions.{package}.handler"


def test_vei_image_code_is_the_vei_package_without_the_cli() -> None:
    files = [str(p.relative_to(ROOT)) for p in build.code_files(catalog.VEI)]
    assert "workloads/vei/gateway.py" in files and "workloads/vei/proto/vei_pb2.py" in files
    assert not [f for f in files if f.endswith("commands.py") or f.startswith(("infra/", "experiments/"))]
    heavy = ("pulumi", "ansible", "pyinfra", "matplotlib")
    assert all(not r.startswith(heavy) for r in catalog.VEI.requirements)
