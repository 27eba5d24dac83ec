"""Cluster-wide settings of a testbed: K3s, KubeEdge, OpenStack and artefact downloads."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from infra import versions
from infra.model_base import ConfigModel as _Model


class FastFailover(_Model):
    """Timings that decide how fast a dead node's pods stop getting traffic and are replaced.

    Kubernetes defaults (status every 10 s, grace 40 s, tolerations 300 s) gave the thesis its 40-80 s
    outages. The fast values keep the kubelet:grace ratio at 1:4 (the kubelet retries a status post
    several times before the node controller may give up on it) and evict after 10 s. Cost: about 2.5x
    more node-status writes to etcd, and a kubelet whose API connection hangs silently for >16 s is
    marked NotReady even though it runs - acceptable for an experiment testbed, not for production.
    """

    enabled: bool = True
    node_monitor_period_s: int = Field(default=2, ge=1)
    node_monitor_grace_period_s: int = Field(default=16, ge=2)
    node_status_update_frequency_s: int = Field(default=4, ge=1)
    default_not_ready_toleration_seconds: int = Field(default=10, ge=0)
    default_unreachable_toleration_seconds: int = Field(default=10, ge=0)

    @model_validator(mode="after")
    def _ratios(self) -> FastFailover:
        if self.node_monitor_grace_period_s < 4 * self.node_status_update_frequency_s:
            raise ValueError(
                "nodeMonitorGracePeriodS must be at least 4x nodeStatusUpdateFrequencyS, or healthy "
                "nodes flap to NotReady: raise the grace period or lower the update frequency"
            )
        if self.node_monitor_period_s > self.node_monitor_grace_period_s:
            raise ValueError("nodeMonitorPeriodS must not exceed nodeMonitorGracePeriodS")
        return self


class SshSettings(_Model):
    """Host-key trust. OpenStack VMs get keys the program generates (their known_hosts is written from
    them); static hosts need the operator's known_hosts file, or the explicit lab override."""

    known_hosts: str | None = Field(
        default=None, description="known_hosts file with the static hosts' keys (operator machine)"
    )
    # Accept a static host's key on first contact (ssh StrictHostKeyChecking=accept-new): only for a
    # lab network you trust; documented in docs/security.md.
    accept_new_host_keys: bool = False


class K3sSettings(_Model):
    version: str = versions.K3S_VERSION
    token: SecretStr = Field(description="shared cluster token; config key edgerig:k3sToken (secret)")
    fast_failover: FastFailover = Field(default_factory=FastFailover)
    # None: vxlan inside one network, wireguard-native when K3s nodes join across public networks
    # (Testbed.flannel_backend decides).
    flannel_backend: Literal["vxlan", "host-gw", "wireguard-native"] | None = None
    # K3s secrets encryption at rest (AES-CBC keys K3s generates and keeps under its data dir).
    secrets_encryption: bool = True
    # metrics-server: K3s bundles one; edgerig deploys its own (edge-aware args) from the platform.
    disable: list[str] = Field(default_factory=lambda: ["traefik", "servicelb", "metrics-server"])
    tls_san: list[str] = Field(default_factory=list)
    extra_server_args: list[str] = Field(default_factory=list)
    cluster_cidr: IPv4Network = IPv4Network("10.42.0.0/16")
    service_cidr: IPv4Network = IPv4Network("10.43.0.0/16")

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        versions.kubernetes_minor(v)
        return v

    @field_validator("token")
    @classmethod
    def _token_strength(cls, v: SecretStr) -> SecretStr:
        if len(v.get_secret_value()) < 16:
            raise ValueError(
                "edgerig:k3sToken is shorter than 16 characters: set a random one with "
                "`pulumi config set --secret edgerig:k3sToken $(openssl rand -hex 32)`"
            )
        return v

    @property
    def kubernetes_minor(self) -> str:
        return versions.kubernetes_minor(self.version)


class EdgeMeshSettings(_Model):
    """EdgeMesh (pinned in infra/versions.py) gives pods on EdgeCore nodes Service routing and DNS:
    without it they cannot reach NATS, and cloud pods cannot reach pods on edges."""

    enabled: bool = True
    # edgemesh-agent's libp2p tunnel port (its default); opened between the nodes when EdgeMesh runs.
    tunnel_port: int = Field(default=20006, ge=1024, le=65535)


class KubeEdgeSettings(_Model):
    enabled: bool = False
    version: str = versions.KUBEEDGE_VERSION
    cloudcore_node: str | None = Field(default=None, description="cloud server to run CloudCore on")
    cloudcore_advertise_address: IPv4Address | None = None
    edgemesh: EdgeMeshSettings = Field(default_factory=EdgeMeshSettings)

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        versions.kubeedge_minor(v)
        return v


class OpenStackSettings(_Model):
    cloud: str | None = Field(default=None, description="clouds.yaml entry; else OS_* env variables")
    external_network: str = Field(description="name of the provider network for the router and floating IPs")
    network_cidr: IPv4Network = IPv4Network("192.168.50.0/24")
    dns_nameservers: list[IPv4Address] = Field(default_factory=lambda: [IPv4Address("1.1.1.1")])
    public_key: str = Field(description="SSH public key (OpenSSH format) installed as the VM keypair")
    floating_ips: bool = True
    availability_zone: str | None = None

    @field_validator("public_key")
    @classmethod
    def _public_key(cls, v: str) -> str:
        if not v.startswith(("ssh-ed25519 ", "ssh-rsa ", "ecdsa-sha2-")):
            raise ValueError(
                "openstack.publicKey must be an OpenSSH public key ('ssh-ed25519 AAAA...'), "
                "e.g. the content of ~/.ssh/id_ed25519.pub - never the private key"
            )
        return v


# Registries the platform pulls from; a mirror for each is needed when nothing may come from outside.
KNOWN_REGISTRIES = ("docker.io", "ghcr.io", "quay.io", "registry.k8s.io")


def _http_url(key: str, v: str) -> str:
    if not v.startswith(("http://", "https://")):
        raise ValueError(f"{key} {v!r} must be an http(s) URL such as http://mirror.lab:8080")
    return v.rstrip("/")


class ArtefactSettings(_Model):
    # Downloads are fetched as {base_url}/<owner>/<repo>/releases/download/<tag>/<file>, i.e. the
    # GitHub layout; an air-gapped lab mirrors that layout on a local HTTP server.
    base_url: str = versions.GITHUB_BASE_URL
    # Upstream registry -> the lab's pull-through mirror of that registry (one endpoint per registry: a
    # pull-through cache proxies a single upstream). Rendered into K3s registries.yaml and the EdgeCore
    # nodes' containerd hosts.toml files; empty pulls from the public registries.
    registry_mirrors: dict[str, str] = Field(default_factory=dict)
    # A Helm repository (e.g. ChartMuseum) serving the pinned platform charts; None = upstream repos.
    chart_repository: str | None = None
    # Nothing may come from the internet: K3s system images are shipped as the release's airgap
    # tarball, every image comes through registry_mirrors and every chart from chart_repository. The
    # hosts' apt sources must be a lab mirror too (checked on the host: packages are only installed
    # when missing).
    air_gapped: bool = False

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _http_url("artefacts.baseUrl", v)

    @field_validator("chart_repository")
    @classmethod
    def _chart_url(cls, v: str | None) -> str | None:
        return None if v is None else _http_url("artefacts.chartRepository", v)

    @field_validator("registry_mirrors")
    @classmethod
    def _mirror_urls(cls, v: dict[str, str]) -> dict[str, str]:
        for registry, url in v.items():
            if "/" in registry or "." not in registry:
                raise ValueError(
                    f"artefacts.registryMirrors key {registry!r} must be a registry host name such as "
                    f"{' or '.join(KNOWN_REGISTRIES)}"
                )
            _http_url(f"artefacts.registryMirrors.{registry}", url)
        return {registry: url.rstrip("/") for registry, url in v.items()}

    def release_url(self, repo: str, tag: str, filename: str) -> str:
        return f"{self.base_url}/{repo}/releases/download/{tag}/{filename}"
