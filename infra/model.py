"""The one typed Testbed model: a stack file is parsed into it once, everything else renders from it.

Config keys are camelCase under the `edgerig:` namespace (`edgerig:adminCidrs`), fields are snake_case;
both spellings are accepted. Every validation error names the config key and says how to fix it
(see `infra.stackfile`), and is raised before Pulumi creates any resource.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from infra import versions

# Re-exported: the whole model is importable from infra.model.
from infra.app_settings import CloudSink as CloudSink
from infra.app_settings import HpaSettings as HpaSettings
from infra.app_settings import MetricsServerSettings as MetricsServerSettings
from infra.app_settings import MonitoringSettings as MonitoringSettings
from infra.app_settings import NatsSettings as NatsSettings
from infra.app_settings import OpenFaaSSettings as OpenFaaSSettings
from infra.app_settings import PlatformSettings, VeiSettings
from infra.model_base import ConfigModel as _Model

EDGE_ROLE_LABEL = "node-role.kubernetes.io/edge"
ZONE_LABEL = "topology.kubernetes.io/zone"
REALM_LABEL = "edgerig.io/realm"
HARDWARE_LABEL = "edgerig.io/hardware-model"
# Which node agent runs there: "k3s" (server/agent) or "edgecore" (KubeEdge). The edge role label
# cannot tell a KubeEdge node from a K3s agent at the edge; DaemonSets that must stay off EdgeCore
# nodes (they have no kube-proxy/flannel) select on this one.
AGENT_LABEL = "edgerig.io/agent"
EDGE_TAINT_KEY = EDGE_ROLE_LABEL

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")


class Taint(_Model):
    key: str
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"

    def render(self) -> str:
        """K3s `node-taint` syntax: key=value:Effect."""
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"


class Node(_Model):
    name: str = Field(description="hostname and Kubernetes node name (DNS-1123 label)")
    realm: Literal["cloud", "edge"]
    # server = K3s server with embedded etcd; agent = K3s agent; edge = KubeEdge EdgeCore.
    # With KubeEdge disabled, `edge` nodes join as K3s agents (Testbed normalises the role).
    role: Literal["server", "agent", "edge"]
    # static = a pre-existing host such as a Raspberry Pi; openstack = a VM this stack creates.
    provider: Literal["openstack", "static"]
    # Where the operator/SSH reaches the host. OpenStack VMs leave it unset in the stack file; the
    # program fills it (floating IP) at deploy time via Testbed.with_deploy_addresses().
    address: IPv4Address | None = None
    # Address on the cluster network (K3s node-ip) when it differs from `address`, e.g. a VM's fixed
    # IP behind its floating IP (filled in at deploy time). None means "same as address".
    internal_address: IPv4Address | None = None
    ssh_user: str = "ubuntu"
    ssh_port: int = Field(default=22, ge=1, le=65535)
    ssh_key_path: str = Field(
        default="~/.ssh/id_ed25519", description="private key path on the operator machine"
    )
    model: str = "openstack-vm"
    os: Literal["raspios", "ubuntu", "debian"] = "ubuntu"
    arch: Literal["amd64", "arm64"] = "amd64"
    labels: dict[str, str] = Field(default_factory=dict)
    taints: list[Taint] = Field(default_factory=list)
    flavor: str | None = None
    image: str | None = None
    volume_gb: int | None = Field(default=None, ge=5, le=2000)

    @field_validator("name")
    @classmethod
    def _hostname(cls, v: str) -> str:
        if not _DNS1123_LABEL.match(v):
            raise ValueError(
                f"{v!r} is not a valid hostname: use lower-case letters, digits and '-', "
                "start and end with a letter or digit, at most 63 characters (e.g. 'master0')"
            )
        return v

    @field_validator("model")
    @classmethod
    def _model_is_label_value(cls, v: str) -> str:
        if not _LABEL_VALUE.match(v):
            raise ValueError(f"{v!r} must be usable as a Kubernetes label value, e.g. 'raspberry-pi-4-8gb'")
        return v

    @field_validator("labels")
    @classmethod
    def _label_values(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if not _LABEL_VALUE.match(value):
                raise ValueError(f"label {key}={value!r}: value is not a valid Kubernetes label value")
        return v

    @model_validator(mode="after")
    def _provider_fields(self) -> Node:
        if self.provider == "static":
            if self.address is None:
                raise ValueError(
                    f"node {self.name!r} is static (an existing host) but has no address: "
                    "set `address: <IPv4>` for it in edgerig:nodes"
                )
            extra = [f for f in ("flavor", "image", "volume_gb") if getattr(self, f) is not None]
            if extra:
                raise ValueError(
                    f"node {self.name!r} is static but sets {', '.join(extra)}: those only apply to "
                    "provider: openstack; remove them"
                )
        else:
            if self.address is not None:
                raise ValueError(
                    f"node {self.name!r} is an OpenStack VM: OpenStack assigns its address at deploy "
                    "time, remove `address`"
                )
            missing = [f for f in ("flavor", "image") if getattr(self, f) is None]
            if missing:
                raise ValueError(
                    f"node {self.name!r} is an OpenStack VM but has no {' or '.join(missing)}: set them "
                    "(e.g. flavor: m1.large, image: ubuntu-22.04)"
                )
        if self.role == "edge" and self.realm != "edge":
            raise ValueError(
                f"node {self.name!r} has role 'edge' (KubeEdge EdgeCore) but realm 'cloud': "
                "set realm: edge, or role: agent for a K3s agent in the cloud"
            )
        return self


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


class K3sSettings(_Model):
    version: str = versions.K3S_VERSION
    token: SecretStr = Field(description="shared cluster token; config key edgerig:k3sToken (secret)")
    fast_failover: FastFailover = Field(default_factory=FastFailover)
    flannel_backend: Literal["vxlan", "host-gw", "wireguard-native"] = "vxlan"
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


class KubeEdgeSettings(_Model):
    enabled: bool = False
    version: str = versions.KUBEEDGE_VERSION
    cloudcore_node: str | None = Field(default=None, description="cloud server to run CloudCore on")
    cloudcore_advertise_address: IPv4Address | None = None

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


class ArtefactSettings(_Model):
    # Downloads are fetched as {base_url}/<owner>/<repo>/releases/download/<tag>/<file>, i.e. the
    # GitHub layout; an air-gapped lab mirrors that layout on a local HTTP server.
    base_url: str = versions.GITHUB_BASE_URL
    # Pull-through container registry mirror for docker.io, ghcr.io and registry.k8s.io (K3s
    # registries.yaml); None pulls from the public registries.
    registry_mirror: str | None = None

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"artefacts.baseUrl {v!r} must be an http(s) URL such as http://mirror.lab:8080")
        return v.rstrip("/")

    @field_validator("registry_mirror")
    @classmethod
    def _mirror_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(
                f"artefacts.registryMirror {v!r} must be an http(s) URL such as https://registry.lab:5000"
            )
        return v.rstrip("/") if v else v

    def release_url(self, repo: str, tag: str, filename: str) -> str:
        return f"{self.base_url}/{repo}/releases/download/{tag}/{filename}"


# Top-level secret config keys and where they live in the model.
SECRET_KEYS: dict[str, tuple[str, str]] = {
    "k3sToken": ("k3s", "token"),
    "awsAccessKeyId": ("vei", "aws_access_key_id"),
    "awsSecretAccessKey": ("vei", "aws_secret_access_key"),
    "mqttPassword": ("vei", "mqtt_password"),
}


class Testbed(_Model):
    __test__: ClassVar[bool] = False  # not a pytest test class despite the name

    name: str
    nodes: list[Node] = Field(min_length=1)
    k3s: K3sSettings
    kubeedge: KubeEdgeSettings = Field(default_factory=KubeEdgeSettings)
    openstack: OpenStackSettings | None = None
    artefacts: ArtefactSettings = Field(default_factory=ArtefactSettings)
    platform: PlatformSettings = Field(default_factory=PlatformSettings)
    vei: VeiSettings = Field(default_factory=VeiSettings)
    # Who may reach SSH, the Kubernetes API and the OpenFaaS gateway from outside the cluster.
    admin_cidrs: list[IPv4Network] = Field(default_factory=list)
    # Taint edge-realm agents/EdgeCore nodes so only workloads that tolerate it run there (thesis 4.2.3).
    edge_taint: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _DNS1123_LABEL.match(v):
            raise ValueError(f"testbed name {v!r} must be a DNS-1123 label such as 'pi-k3s'")
        return v

    @field_validator("admin_cidrs", mode="before")
    @classmethod
    def _cidrs(cls, v: Any) -> Any:
        if not isinstance(v, list):
            return v
        for i, item in enumerate(v):
            try:
                IPv4Network(str(item), strict=True)
            except ValueError as exc:
                raise ValueError(
                    f"adminCidrs[{i}] = {item!r} is not an IPv4 CIDR ({exc}): write a network such as "
                    "203.0.113.0/24, or 203.0.113.7/32 for a single host"
                ) from None
            if "/" not in str(item):
                raise ValueError(
                    f"adminCidrs[{i}] = {item!r} has no prefix length: write {item}/32 for a single host"
                )
        return v

    @model_validator(mode="before")
    @classmethod
    def _edge_role_follows_kubeedge(cls, data: Any) -> Any:
        # The one setting that turns a KubeEdge testbed into a plain K3s one: with KubeEdge off,
        # `role: edge` nodes join as K3s agents, so every consumer can trust node.role as-is.
        if not isinstance(data, dict):
            return data
        kubeedge = data.get("kubeedge") or {}
        enabled = (
            kubeedge.enabled if isinstance(kubeedge, KubeEdgeSettings) else kubeedge.get("enabled", False)
        )
        if enabled or not isinstance(data.get("nodes"), list):
            return data
        nodes = [
            {**n, "role": "agent"} if isinstance(n, dict) and n.get("role") == "edge" else n
            for n in data["nodes"]
        ]
        return {**data, "nodes": nodes}

    @model_validator(mode="after")
    def _topology(self) -> Testbed:
        names = [n.name for n in self.nodes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate hostnames {dupes} in edgerig:nodes: every node needs its own name")
        addrs = [str(n.address) for n in self.nodes if n.address is not None]
        dupes = sorted({a for a in addrs if addrs.count(a) > 1})
        if dupes:
            raise ValueError(f"duplicate addresses {dupes} in edgerig:nodes: every static node needs its own")
        servers = self.servers
        if not servers:
            raise ValueError("edgerig:nodes has no node with role: server; K3s needs at least one")
        if len(servers) % 2 == 0:
            raise ValueError(
                f"edgerig:nodes has {len(servers)} servers: embedded etcd needs an odd number for quorum "
                f"(1, 3 or 5); change one server to role: agent or add one"
            )
        if any(n.provider == "openstack" for n in self.nodes):
            if self.openstack is None:
                raise ValueError(
                    "edgerig:nodes has provider: openstack nodes but edgerig:openstack is not set: "
                    "add it with externalNetwork and publicKey"
                )
            if not self.admin_cidrs:
                raise ValueError(
                    "OpenStack VMs need edgerig:adminCidrs (who may reach SSH and the API), e.g. "
                    "`pulumi config set --path 'edgerig:adminCidrs[0]' 203.0.113.0/24`"
                )
        self._check_cidrs()
        if self.kubeedge.enabled:
            self._check_kubeedge()
        if self.vei.enabled and not self.platform.nats.jetstream:
            raise ValueError(
                "edgerig:vei.enabled needs JetStream: the gateway keeps its camera/app/cloud registries "
                "in NATS KV. Set edgerig:platform.nats.jetstream true (or vei.enabled false)"
            )
        if self.platform.metrics_server.enabled and "metrics-server" not in self.k3s.disable:
            raise ValueError(
                "edgerig:platform.metricsServer.enabled deploys metrics-server, but K3s also bundles one: "
                "add metrics-server to edgerig:k3s.disable or set platform.metricsServer.enabled false"
            )
        return self

    def _check_cidrs(self) -> None:
        """Pod and Service ranges must not hide real hosts: routes to them would go into flannel."""
        inner = {"k3s.clusterCidr": self.k3s.cluster_cidr, "k3s.serviceCidr": self.k3s.service_cidr}
        if self.k3s.cluster_cidr.overlaps(self.k3s.service_cidr):
            raise ValueError("edgerig:k3s.clusterCidr and k3s.serviceCidr overlap: pick disjoint ranges")
        for key, net in inner.items():
            if self.openstack is not None and self.openstack.network_cidr.overlaps(net):
                raise ValueError(
                    f"edgerig:openstack.networkCidr {self.openstack.network_cidr} overlaps edgerig:{key} "
                    f"{net}: choose another VM network, e.g. 192.168.50.0/24"
                )
            for node in self.nodes:
                if node.address is not None and node.address in net:
                    raise ValueError(
                        f"node {node.name!r} address {node.address} lies inside edgerig:{key} {net}: "
                        "change that range in edgerig:k3s"
                    )

    def _check_kubeedge(self) -> None:
        ke_minor = versions.kubeedge_minor(self.kubeedge.version)
        k8s_minor = self.k3s.kubernetes_minor
        supported = versions.KUBEEDGE_KUBERNETES_COMPAT.get(ke_minor, ())
        if k8s_minor not in supported:
            fits = [f"v{m}" for m, ks in versions.KUBEEDGE_KUBERNETES_COMPAT.items() if k8s_minor in ks]
            raise ValueError(
                f"edgerig:kubeedge.version {self.kubeedge.version} does not support Kubernetes {k8s_minor} "
                f"(K3s {self.k3s.version}); supported minors: {list(supported) or 'unknown release'}. "
                f"Use a KubeEdge release from {fits or 'none'} or change edgerig:k3s.version"
            )
        cloud_servers = [n for n in self.servers if n.realm == "cloud"]
        if self.edge_nodes and not cloud_servers:
            raise ValueError(
                "KubeEdge edge nodes need CloudCore on a cloud server, but edgerig:nodes has no "
                "realm: cloud, role: server node: add one, or set edgerig:kubeedge.enabled false"
            )
        wanted = self.kubeedge.cloudcore_node
        if wanted is not None and wanted not in {n.name for n in cloud_servers}:
            raise ValueError(
                f"edgerig:kubeedge.cloudcoreNode {wanted!r} is not a cloud server; pick one of "
                f"{[n.name for n in cloud_servers]}"
            )

    # --- derived views ----------------------------------------------------------------------------
    @property
    def servers(self) -> list[Node]:
        """K3s servers in stack order; the first one runs `cluster-init`."""
        return [n for n in self.nodes if n.role == "server"]

    @property
    def first_server(self) -> Node:
        return self.servers[0]

    @property
    def agents(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "agent"]

    @property
    def edge_nodes(self) -> list[Node]:
        """KubeEdge EdgeCore nodes (empty when KubeEdge is off)."""
        return [n for n in self.nodes if n.role == "edge"]

    @property
    def openstack_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.provider == "openstack"]

    @property
    def static_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.provider == "static"]

    @property
    def cloudcore_node(self) -> Node | None:
        if not self.kubeedge.enabled:
            return None
        cloud_servers = [n for n in self.servers if n.realm == "cloud"]
        if self.kubeedge.cloudcore_node:
            return self.node(self.kubeedge.cloudcore_node)
        return cloud_servers[0] if cloud_servers else None

    @property
    def api_endpoints(self) -> list[str]:
        """Known addresses the API is reached on (tls-san); floating IPs are added at deploy time."""
        found = [
            str(a) for n in self.servers for a in (n.address, n.internal_address) if a is not None
        ] + list(self.k3s.tls_san)
        return list(dict.fromkeys(found))

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node named {name!r} in testbed {self.name!r}")

    def node_labels(self, node: Node) -> dict[str, str]:
        labels = {
            REALM_LABEL: node.realm,
            ZONE_LABEL: f"{self.name}-{node.realm}",
            HARDWARE_LABEL: node.model,
            AGENT_LABEL: "edgecore" if node.role == "edge" else "k3s",
        }
        if node.realm == "edge":
            labels[EDGE_ROLE_LABEL] = ""
        return {**labels, **node.labels}

    def kubelet_labels(self, node: Node) -> dict[str, str]:
        """Labels the node may set on itself at registration (K3s `node-label`, keadm `--labels`)."""
        return {k: v for k, v in self.node_labels(node).items() if not is_restricted_label(k)}

    def api_labels(self, node: Node) -> dict[str, str]:
        """Labels the NodeRestriction admission plugin forbids a kubelet to self-set (e.g.
        node-role.kubernetes.io/edge on a K3s agent); they must be applied through the API."""
        return {k: v for k, v in self.node_labels(node).items() if is_restricted_label(k)}

    def node_taints(self, node: Node) -> list[Taint]:
        taints = list(node.taints)
        # Servers stay schedulable: on an all-Pi testbed they carry the workloads too.
        if self.edge_taint and node.realm == "edge" and node.role != "server":
            taints.append(Taint(key=EDGE_TAINT_KEY, effect="NoSchedule"))
        return taints

    def with_deploy_addresses(
        self, addresses: Mapping[str, str], internal_addresses: Mapping[str, str] | None = None
    ) -> Testbed:
        """A copy with deploy-time addresses filled in (OpenStack floating/fixed IPs).

        Uses model_copy, not validation: an OpenStack node *with* an address is only valid after
        OpenStack assigned it, which is exactly this case.
        """
        internal = internal_addresses or {}
        nodes = []
        for node in self.nodes:
            update: dict[str, Any] = {}
            if node.name in addresses:
                update["address"] = IPv4Address(addresses[node.name])
            if node.name in internal and internal[node.name] != addresses.get(node.name):
                update["internal_address"] = IPv4Address(internal[node.name])
            nodes.append(node.model_copy(update=update) if update else node)
        return self.model_copy(update={"nodes": nodes})

    # --- serialisation ------------------------------------------------------------------------------
    def public_dump(self) -> dict[str, Any]:
        """JSON-safe dump with every secret masked; safe for dynamic-provider inputs and logs."""
        return self.model_dump(mode="json")

    def secret_values(self) -> dict[str, str]:
        """Top-level secret config key -> value, for passing as Pulumi secrets."""
        out: dict[str, str] = {}
        for key, (section, field) in SECRET_KEYS.items():
            value = getattr(getattr(self, section), field)
            if value is not None:
                out[key] = value.get_secret_value()
        return out

    @classmethod
    def restore(cls, public: Mapping[str, Any], secrets: Mapping[str, str]) -> Testbed:
        """Inverse of public_dump() + secret_values()."""
        data: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in public.items()}
        for key, (section, field) in SECRET_KEYS.items():
            data.setdefault(section, {})
            data[section][field] = secrets.get(key)
        return cls.model_validate(data)

    @classmethod
    def from_stack_file(
        cls, path: str | Path, secrets: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None
    ) -> Testbed:
        """Parse stacks/Pulumi.<name>.yaml without the Pulumi engine (CLI, hosts, tests)."""
        from infra.stackfile import load_stack_file

        return load_stack_file(Path(path), secrets=secrets, env=env)


def load_testbed(config: Mapping[str, Any], *, name: str | None = None) -> Testbed:
    """Build the Testbed from a config map (keys with or without the `edgerig:` prefix).

    Raises StackConfigError naming the config key and the fix; never returns a half-valid model.
    """
    from infra.stackfile import StackConfigError, format_validation_error

    data: dict[str, Any] = {}
    for key, value in config.items():
        if ":" in key:
            namespace, _, key = key.partition(":")
            if namespace != "edgerig":
                continue  # provider config such as openstack:cloud is not ours
        data[key] = value
    if name is not None:
        data.setdefault("name", name)
    for key, (section, field) in SECRET_KEYS.items():
        value = data.pop(key, None)
        if value is None:
            continue
        section_data = dict(data.get(section) or {})
        section_data[field] = value
        data[section] = section_data
    if not (data.get("k3s") or {}).get("token"):
        raise StackConfigError(
            "edgerig:k3sToken is missing: it is the shared K3s cluster secret. Set it with "
            "`pulumi config set --secret edgerig:k3sToken $(openssl rand -hex 32)`"
        )
    try:
        return Testbed.model_validate(data)
    except ValueError as exc:  # pydantic.ValidationError subclasses ValueError
        raise StackConfigError(format_validation_error(exc)) from None


def is_restricted_label(key: str) -> bool:
    """True for kubernetes.io/k8s.io labels a kubelet may not set on its own Node (NodeRestriction)."""
    prefix = key.split("/", 1)[0] if "/" in key else ""
    domain_is_k8s = any(prefix == d or prefix.endswith("." + d) for d in ("kubernetes.io", "k8s.io"))
    if not domain_is_k8s:
        return False
    allowed_prefixes = ("kubelet.kubernetes.io", "node.kubernetes.io")
    allowed_keys = {
        "kubernetes.io/hostname",
        "kubernetes.io/arch",
        "kubernetes.io/os",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "failure-domain.beta.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "topology.kubernetes.io/zone",
    }
    return key not in allowed_keys and not any(
        prefix == p or prefix.endswith("." + p) for p in allowed_prefixes
    )


def nodes_named(testbed: Testbed, names: Sequence[str] | None) -> list[Node]:
    """The nodes to act on: all of them (None) or the named ones, in install order."""
    if names is None:
        return list(testbed.nodes)
    unknown = sorted(set(names) - {n.name for n in testbed.nodes})
    if unknown:
        raise KeyError(
            f"unknown nodes {unknown}; testbed {testbed.name!r} has {[n.name for n in testbed.nodes]}"
        )
    return [n for n in testbed.nodes if n.name in set(names)]
