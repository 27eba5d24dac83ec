"""Run infra/__main__.py the way Pulumi does (runpy on the directory), with stack config from a
stack file and the engine mocked. Used by test_entrypoint.py in a subprocess (it changes sys.path)."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pulumi
import yaml
from pulumi.runtime.config import set_all_config

sys.path.insert(0, str(Path(__file__).parent))
from pulumi_support import RecordingMocks


def main(stack_file: str, token: str) -> None:
    config = yaml.safe_load(Path(stack_file).read_text())["config"]
    flat = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in config.items()}
    if token != "-":  # "-": leave the secret unset
        flat["edgerig:k3sToken"] = token
    set_all_config(flat, ["edgerig:k3sToken"])
    mocks = RecordingMocks()
    stack = Path(stack_file).name.removeprefix("Pulumi.").removesuffix(".yaml")
    pulumi.runtime.set_mocks(mocks, project="edgerig", stack=stack, preview=False)
    infra_dir = Path(__file__).resolve().parents[2] / "infra"

    @pulumi.runtime.test
    def run() -> None:
        sys.path.insert(0, str(infra_dir))  # what Pulumi's runpy.run_path(<dir>) does
        runpy.run_path(str(infra_dir), run_name="__main__")

    try:
        run()
    except Exception as exc:  # report instead of a traceback: the test checks message and count
        print(json.dumps({"error": str(exc), "resources": len(mocks.resources)}))
        return
    import platform

    print(
        json.dumps(
            {
                "resources": len(mocks.resources),
                "platform_module": platform.__file__,
                "infra_dir_on_path": str(infra_dir) in sys.path,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
