"""Every pinned version edgerig deploys, in one place.

Hosts (pyinfra/Ansible), the Pulumi program and the tests read these constants; nothing else
hard-codes a version. Changing a value here changes the host-config hash, so `pulumi up` re-runs
the affected install step.
"""

from __future__ import annotations

from typing import Final

# --- Kubernetes / K3s -----------------------------------------------------------------------------
# K3s v1.30 because it is the newest Kubernetes minor that the pinned KubeEdge release fully supports
# (see KUBEEDGE_KUBERNETES_COMPAT below); one cluster must run one minor for both orchestrators.
K3S_VERSION: Final = "v1.30.6+k3s1"

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


# --- Artefact checksums (sha256 of the release file as published) ---------------------------------
# Keyed by "<owner>/<repo>/<tag>/<file>". None means "not pinned yet": edgerig then refuses to install
# that artefact and says which value to add (take it from the release's sha256sum-<arch>.txt /
# checksum_<file>.txt). A value is never guessed and never fetched from the same server at run time.
ARTEFACT_SHA256: Final[dict[str, str | None]] = {
    # From the v1.30.6+k3s1 release's sha256sum-amd64.txt / sha256sum-arm64.txt, as recorded in the
    # k3s_checksums map of the public andrewrothstein/ansible-k3s role. The lookups for this project
    # found only that one record, so they are not cross-checked; compare them with the release page
    # before the first install on real hardware.
    f"k3s-io/k3s/{K3S_VERSION}/k3s": "66f96a9a9ec631a4b69b08884d38f8ad8124907666323e9215993693d8853c66",
    f"k3s-io/k3s/{K3S_VERSION}/k3s-arm64": "d6a4aac2945bf7a757b87a56f41b49c500ed5d4ccc2b42284ebfbd3cd1a25162",
    # KubeEdge publishes only sha512 digests (checksum_keadm-*.txt); no sha256 for these tarballs is
    # on record. Compute it once from a tarball verified against that sha512 and put it here.
    f"kubeedge/kubeedge/{KUBEEDGE_VERSION}/keadm-{KUBEEDGE_VERSION}-linux-amd64.tar.gz": None,
    f"kubeedge/kubeedge/{KUBEEDGE_VERSION}/keadm-{KUBEEDGE_VERSION}-linux-arm64.tar.gz": None,
}
