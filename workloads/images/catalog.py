"""The images edgerig builds, and what each one holds.

Each image holds only what its processes need at run time: the Python runtime from Debian (no
shell, no package manager, no compiler), the subset of the lock file its code imports, and its own
code. The VEI image runs every VEI process - gateway, vision app, camera and sink - and the command
chooses which (`python -m workloads.vei.<process>`, rendered by workloads/vei/launch.py). Pulumi,
Ansible, pyinfra, matplotlib and the CLI's own packages stay out of every image.

The four function images keep the OpenFaaS python3-http template contract
(workloads/functions/http_template.py) for the thesis's functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workloads.functions import catalog as function_catalog
from workloads.functions.catalog import FunctionInfo
from workloads.vei import launch

# Debian packages of the base every image starts from (their dependency closure is copied, see
# base.py). python-is-python3 gives `python`, the command the Kubernetes manifests run; libstdc++6
# is the C++ runtime that manylinux wheels (grpcio, pydantic-core) expect from the system.
BASE_PACKAGES = ("python3", "python-is-python3", "ca-certificates", "libstdc++6")
USER_ID = 10001
USER_NAME = "edgerig"


@dataclass(frozen=True)
class ImageDef:
    name: str
    description: str
    # Top-level PyPI distributions its code imports; their closure is taken from the lock file.
    requirements: tuple[str, ...]
    # Packages (directories under the repository root) copied as the image's code; `exclude` are
    # glob patterns of files left out.
    code: tuple[str, ...]
    cmd: tuple[str, ...]
    ports: tuple[int, ...] = ()
    debian_extra: tuple[str, ...] = ()  # more Debian packages than BASE_PACKAGES (with their closure)
    exclude: tuple[str, ...] = ("*commands.py", "*.pyi", "*.proto", "*.sh", "py.typed")
    env: dict[str, str] = field(default_factory=dict)


# The gateway imports every cloud sink at start (local, MQTT, AWS IoT), so boto3 is part of it.
VEI_REQUIREMENTS = (
    "grpcio", "grpcio-health-checking", "grpcio-reflection", "protobuf", "nats-py", "prometheus-client",
    "pydantic", "pydantic-settings", "paho-mqtt", "boto3",
)
VEI = ImageDef(
    name="vei",
    description="VEI gateway, vision app, camera and sink; the command picks the process",
    requirements=VEI_REQUIREMENTS,
    code=("workloads/__init__.py", "workloads/vei"),
    cmd=("python", "-m", "workloads.vei.gateway", "--listen", "0.0.0.0:50051"),
    ports=(50051, 9102),
    env=dict(launch.GRPC_ENV),  # also for a container started by hand, without edgerig's manifests
)

FUNCTION_CODE = ("workloads/__init__.py", "workloads/functions/__init__.py",
                 "workloads/functions/http_template.py")


def _function(info: FunctionInfo) -> ImageDef:
    return ImageDef(
        name=f"fn-{info.name}",
        description=f"OpenFaaS function {info.name} (python3-http template contract, port 8080)",
        requirements=("waitress",),
        code=(*FUNCTION_CODE, f"workloads/functions/{info.package}"),
        cmd=("python", "-m", "workloads.functions.http_template", info.module),
        ports=(8080,),
        debian_extra=info.debian_packages,
    )


# faas-cli stack file name -> image, for every function of the one catalogue of them.
FUNCTIONS: dict[str, ImageDef] = {name: _function(info) for name, info in function_catalog.FUNCTIONS.items()}
IMAGES: dict[str, ImageDef] = {VEI.name: VEI, **{d.name: d for d in FUNCTIONS.values()}}


def function_image(function: str) -> str:
    """The image name of an OpenFaaS function as the faas-cli stack file names it."""
    return FUNCTIONS[function].name


def function_env_var(function: str) -> str:
    """The variable workloads/functions/stack.yaml reads the function's image reference from."""
    return f"EDGERIG_IMAGE_{function.upper().replace('-', '_')}"
