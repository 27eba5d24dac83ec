"""Every pinned version edgerig deploys, in one place, and the digests that pin their artefacts.

Hosts (pyinfra/Ansible), the Pulumi program and the tests read these constants; nothing else
hard-codes a version. Changing a value here changes the host-config hash, so `pulumi up` re-runs
the affected install step. The digests live beside this file in artefact_pins.yaml (data, so
`edgerig artefacts pin --from MIRROR` can fill them) and are loaded into ARTEFACT_PINS.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import yaml

# --- Kubernetes / K3s -----------------------------------------------------------------------------
# K3s v1.30 because it is the newest Kubernetes minor that the pinned KubeEdge release fully supports
# (see KUBEEDGE_KUBERNETES_COMPAT below); one cluster must run one minor for both orchestrators.
K3S_VERSION: Final = "v1.30.6+k3s1"
# K3s's default `cluster-domain`; EdgeCore nodes are told the same one (EdgeMesh answers for it).
K3S_CLUSTER_DOMAIN: Final = "cluster.local"

# The kubernetes-validate schema used to check every object we render. It must match the K3s minor.
KUBERNETES_SCHEMA_VERSION: Final = "1.30.0"

# --- KubeEdge -------------------------------------------------------------------------------------
KUBEEDGE_VERSION: Final = "v1.20.0"

# KubeEdge minor -> Kubernetes minors it is *fully* compatible with ("✓" in the compatibility matrix
# of the KubeEdge README / docs). "+" entries (some KubeEdge features or APIs missing on that
# Kubernetes) and "-" entries are deliberately not listed: a testbed must not run a half-working pair.
KUBEEDGE_KUBERNETES_COMPAT: Final[dict[str, tuple[str, ...]]] = {
    "1.16": ("1.25", "1.26", "1.27"),
    "1.17": ("1.26", "1.27", "1.28"),
    "1.18": ("1.27", "1.28", "1.29"),
    "1.19": ("1.27", "1.28", "1.29"),
    "1.20": ("1.28", "1.29", "1.30"),
}

# Images that keadm pulls for the pinned release (keadm v1.20 `init` renders its built-in CloudCore
# chart with these, `join` pulls installation-package through CRI and copies edgecore out of it; the
# pause image is EdgeCore v1.20's default podSandboxImage). Pulled by digest once pinned.
KUBEEDGE_CLOUDCORE_IMAGE: Final = f"docker.io/kubeedge/cloudcore:{KUBEEDGE_VERSION}"
KUBEEDGE_IPTABLES_MANAGER_IMAGE: Final = f"docker.io/kubeedge/iptables-manager:{KUBEEDGE_VERSION}"
KUBEEDGE_INSTALLATION_PACKAGE_IMAGE: Final = f"docker.io/kubeedge/installation-package:{KUBEEDGE_VERSION}"
KUBEEDGE_PAUSE_IMAGE: Final = "docker.io/kubeedge/pause:3.6"

# --- EdgeMesh (Service routing and DNS for pods on EdgeCore nodes) -----------------------------------
# v1.17.0 is the newest EdgeMesh release; it needs KubeEdge >= 1.7 (edge Kube-API endpoint).
EDGEMESH_VERSION: Final = "v1.17.0"
EDGEMESH_AGENT_IMAGE: Final = f"docker.io/kubeedge/edgemesh-agent:{EDGEMESH_VERSION}"

# --- Helm charts (repository URL, chart name, version) --------------------------------------------
NATS_CHART_REPO: Final = "https://nats-io.github.io/k8s/helm/charts/"
NATS_CHART: Final = "nats"
NATS_CHART_VERSION: Final = "1.2.8"

OPENFAAS_CHART_REPO: Final = "https://openfaas.github.io/faas-netes/"
OPENFAAS_CHART: Final = "openfaas"
OPENFAAS_CHART_VERSION: Final = "14.1.9"
# The last chart before OpenFaaS CE capped functions at 5 replicas (faas-netes 0.16.3; the cap came
# with 0.16.4, Jan 2023, and from 0.16.6 the provider resets Deployments scaled beyond it). Pin it
# (edgerig:platform.openfaas.chartVersion) to reproduce the thesis's HPA maximum of 25; its values
# take the same keys as the pinned chart's that edgerig sets.
OPENFAAS_PRECAP_CHART_VERSION: Final = "11.1.10"

KUBE_PROMETHEUS_STACK_CHART_REPO: Final = "https://prometheus-community.github.io/helm-charts"
KUBE_PROMETHEUS_STACK_CHART: Final = "kube-prometheus-stack"
KUBE_PROMETHEUS_STACK_CHART_VERSION: Final = "65.1.1"

METRICS_SERVER_CHART_REPO: Final = "https://kubernetes-sigs.github.io/metrics-server/"
METRICS_SERVER_CHART: Final = "metrics-server"
METRICS_SERVER_CHART_VERSION: Final = "3.12.2"

# --- Container images -----------------------------------------------------------------------------
# edgerig's own images (VEI, the functions) are pinned by the digests of their build: the build record
# (images.json, see infra/images.py and workloads/images/); their Debian base is bookworm, their Python
# packages come from requirements.lock. Upstream images of the charts are pinned here.
NATS_SERVER_IMAGE_TAG: Final = "2.10.22-alpine"

# --- Upstream release locations (an air-gapped lab mirrors this layout under its own base URL) -----
GITHUB_BASE_URL: Final = "https://github.com"


def kubernetes_minor(k3s_version: str) -> str:
    """'v1.30.6+k3s1' -> '1.30'. Raises ValueError for anything that is not a K3s release tag."""
    core = k3s_version.removeprefix("v").split("+", 1)[0]
    parts = core.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"{k3s_version!r} is not a K3s release tag like 'v1.30.6+k3s1'")
    return f"{parts[0]}.{parts[1]}"


def kubeedge_minor(kubeedge_version: str) -> str:
    """'v1.20.0' -> '1.20'. Raises ValueError for anything that is not a KubeEdge release tag."""
    parts = kubeedge_version.removeprefix("v").split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"{kubeedge_version!r} is not a KubeEdge release tag like 'v1.20.0'")
    return f"{parts[0]}.{parts[1]}"


# --- Artefact pins ----------------------------------------------------------------------------------
Algorithm = Literal["sha256", "sha512"]
ALGORITHMS: Final[tuple[Algorithm, ...]] = ("sha256", "sha512")
DIGEST_LENGTH: Final[dict[str, int]] = {"sha256": 64, "sha512": 128}


@dataclass(frozen=True)
class Pin:
    """A digest as its upstream publishes it: K3s publishes sha256 (sha256sum-<arch>.txt), KubeEdge
    sha512 (checksum_<file>.txt), registries the sha256 of an image's manifest. `source` says where the
    value was taken from, so a reviewer can check it."""

    algorithm: Algorithm
    digest: str
    source: str

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"pin algorithm {self.algorithm!r} is not one of {ALGORITHMS}")
        want = DIGEST_LENGTH[self.algorithm]
        if len(self.digest) != want or any(c not in "0123456789abcdef" for c in self.digest):
            raise ValueError(f"a {self.algorithm} digest is {want} lower-case hex digits: {self.digest!r}")


# EDGERIG_ARTEFACT_PINS names another pins file (tests, or a lab that keeps its pins elsewhere).
ARTEFACT_PINS_FILE: Final = Path(
    os.environ.get("EDGERIG_ARTEFACT_PINS", Path(__file__).with_name("artefact_pins.yaml"))
)


def load_pins(path: Path) -> dict[str, Pin]:
    """Key -> Pin. Keys: '<owner>/<repo>/<tag>/<file>' for release files, the image reference
    ('docker.io/kubeedge/cloudcore:v1.20.0') for images. A key that is absent is not pinned."""
    doc = yaml.safe_load(path.read_text()) if path.exists() else None
    pins: dict[str, Pin] = {}
    for key, entry in (doc or {}).items():
        try:
            algorithm, digest = str(entry["algorithm"]), str(entry["digest"]).lower()
            pins[str(key)] = Pin(algorithm, digest, str(entry["source"]))  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"{path}: entry {key!r} is not a pin ({exc}); give it algorithm, digest and source"
            ) from None
    return pins


ARTEFACT_PINS: Final[dict[str, Pin]] = load_pins(ARTEFACT_PINS_FILE)
