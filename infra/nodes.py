"""Hosts of a testbed: the Node model, its Kubernetes labels and taints."""

from __future__ import annotations

import re
from ipaddress import IPv4Address
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

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

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
# A portable POSIX user name (the shadow-utils rule Debian's adduser applies by default): it never
# starts with '-', so it can never be read as an ssh option, and it holds no '@', ':' or space.
POSIX_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
NAME_SYNTAX = {
    "name": (
        DNS1123_LABEL,
        "is not a valid hostname: use lower-case letters, digits and '-', start and end with a letter "
        "or digit, at most 63 characters (e.g. 'master0')",
    ),
    "ssh_user": (
        POSIX_USER,
        "is not a POSIX user name (sshUser): use lower-case letters, digits, '_' and '-', starting with "
        "a letter or '_', at most 32 characters (e.g. 'pi' or 'ubuntu')",
    ),
}


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

    @field_validator("name", "ssh_user")
    @classmethod
    def _name_syntax(cls, v: str, info: ValidationInfo) -> str:
        pattern, problem = NAME_SYNTAX[info.field_name or ""]
        if not pattern.match(v):
            raise ValueError(f"{v!r} {problem}")
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
