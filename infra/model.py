"""The one typed Testbed model: a stack file is parsed into it once, everything else renders from it.

Config keys are camelCase under the `edgerig:` namespace (`edgerig:adminCidrs`), fields are snake_case;
both spellings are accepted. Every validation error names the config key and says how to fix it
(see `infra.stackfile`), and is raised before Pulumi creates any resource.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from infra import versions

# Re-exported: the whole model is importable from infra.model.
from infra.app_settings import CloudSink as CloudSink
from infra.app_settings import HpaSettings as HpaSettings
from infra.app_settings import ImageSettings as ImageSettings
from infra.app_settings import MetricsServerSettings as MetricsServerSettings
from infra.app_settings import MonitoringSettings as MonitoringSettings
from infra.app_settings import NatsSettings as NatsSettings
from infra.app_settings import OpenFaaSSettings as OpenFaaSSettings
from infra.app_settings import PlatformSettings, VeiSettings

# Split out to keep modules small; re-exported here so `from infra.model import X` keeps working.
from infra.cluster_settings import KNOWN_REGISTRIES as KNOWN_REGISTRIES
from infra.cluster_settings import ArtefactSettings as ArtefactSettings
from infra.cluster_settings import EdgeMeshSettings as EdgeMeshSettings
from infra.cluster_settings import FastFailover as FastFailover
from infra.cluster_settings import K3sSettings as K3sSettings
from infra.cluster_settings import KubeEdgeSettings as KubeEdgeSettings
from infra.cluster_settings import OpenStackSettings as OpenStackSettings
from infra.cluster_settings import SshSettings as SshSettings
from infra.model_base import ConfigModel as _Model
from infra.nodes import AGENT_LABEL as AGENT_LABEL
from infra.nodes import DNS1123_LABEL as DNS1123_LABEL
from infra.nodes import EDGE_ROLE_LABEL as EDGE_ROLE_LABEL
from infra.nodes import EDGE_TAINT_KEY as EDGE_TAINT_KEY
from infra.nodes import HARDWARE_LABEL as HARDWARE_LABEL
from infra.nodes import REALM_LABEL as REALM_LABEL
from infra.nodes import ZONE_LABEL as ZONE_LABEL
from infra.nodes import Node as Node
from infra.nodes import Taint as Taint
from infra.nodes import is_restricted_label as is_restricted_label

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
    images: ImageSettings = Field(default_factory=ImageSettings)
    # Who may reach SSH, the Kubernetes API and the OpenFaaS gateway from outside the cluster.
    admin_cidrs: list[IPv4Network] = Field(default_factory=list)
    # How the operator's machine trusts the hosts' SSH keys.
    ssh: SshSettings = Field(default_factory=lambda: SshSettings())
    # Taint edge-realm agents/EdgeCore nodes so only workloads that tolerate it run there (thesis 4.2.3).
    edge_taint: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not DNS1123_LABEL.match(v):
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
        self._check_k3s_across_networks()
        if self.artefacts.air_gapped:
            self._check_air_gapped()
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
        faas = self.platform.openfaas
        if self.edge_nodes and faas.enabled and faas.edge_weight > 0 and not self.kubeedge.edgemesh.enabled:
            raise ValueError(
                f"edgerig:platform.openfaas.edgeWeight {faas.edge_weight} asks for functions on the "
                "edge, but pods on EdgeCore nodes reach Services (and the OpenFaaS gateway reaches "
                "them) only through EdgeMesh, which edgerig:kubeedge.edgemesh.enabled turns off: "
                "enable EdgeMesh, or set platform.openfaas.edgeWeight 0 to keep the functions in the cloud"
            )

    def _check_k3s_across_networks(self) -> None:
        """K3s nodes outside the cloud reach the VMs only through their floating IPs, over the internet:
        flannel then runs between public addresses (flannel-external-ip) and must be encrypted there.
        Unset, the backend becomes wireguard-native; an explicit unencrypted one is refused."""
        spanning = self.k3s_nodes_outside_the_cloud
        chosen = self.k3s.flannel_backend
        if spanning and chosen is not None and chosen != "wireguard-native":
            raise ValueError(
                f"K3s nodes {[n.name for n in spanning]} join VMs behind floating IPs, so pod traffic "
                f"crosses public networks, where flannel backend {chosen!r} is unencrypted "
                "(vxlan) or cannot route (host-gw): set edgerig:k3s.flannelBackend: wireguard-native "
                "(UDP 51820 to every node), leave it unset (the default there), or join those hosts as "
                "KubeEdge edge nodes"
            )

    def _check_air_gapped(self) -> None:
        missing = [r for r in self.required_registries if r not in self.artefacts.registry_mirrors]
        if missing:
            raise ValueError(
                f"edgerig:artefacts.airGapped: this stack pulls images from {missing}, which have no entry "
                "in edgerig:artefacts.registryMirrors: add a pull-through mirror for each "
                "(e.g. registryMirrors: {docker.io: https://registry.lab:5000})"
            )
        if self.artefacts.chart_repository is None:
            raise ValueError(
                "edgerig:artefacts.airGapped: the platform charts would come from their public Helm "
                "repositories: set edgerig:artefacts.chartRepository to a Helm repository serving them "
                "(the pinned versions are listed in docs/hosts.md)"
            )

    # --- derived views ----------------------------------------------------------------------------
    @property
    def flannel_backend(self) -> str:
        """The flannel backend every node runs: the stack's choice, else WireGuard when K3s nodes join
        across public networks (nothing else encrypts pod traffic there), else VXLAN."""
        if self.k3s.flannel_backend is not None:
            return self.k3s.flannel_backend
        return "wireguard-native" if self.k3s_nodes_outside_the_cloud else "vxlan"

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
    def k3s_nodes_outside_the_cloud(self) -> list[Node]:
        """Static K3s nodes (not EdgeCore) that join OpenStack VMs which sit behind floating IPs."""
        if not self.openstack_nodes or self.openstack is None or not self.openstack.floating_ips:
            return []
        return [n for n in self.static_nodes if n.role != "edge"]

    @property
    def edgemesh_enabled(self) -> bool:
        """EdgeMesh runs whenever the testbed has EdgeCore nodes and does not switch it off."""
        return bool(self.edge_nodes) and self.kubeedge.edgemesh.enabled

    @property
    def required_registries(self) -> list[str]:
        """Registries the deployed images come from (K3s's own images ship in its airgap tarball)."""
        wanted = {"docker.io"}  # NATS; KubeEdge and EdgeMesh
        if self.vei.enabled or self.platform.openfaas.enabled:
            wanted.add("ghcr.io")
        if self.platform.monitoring.enabled:
            wanted |= {"quay.io", "registry.k8s.io"}
        if self.platform.metrics_server.enabled:
            wanted.add("registry.k8s.io")
        return [r for r in KNOWN_REGISTRIES if r in wanted]

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
