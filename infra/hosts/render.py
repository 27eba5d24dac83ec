"""Every per-host file, rendered in Python from the Testbed model (DESIGN principle 1).

pyinfra and Ansible only deliver these files and run the guarded commands; they hold no flag, port,
token or version of their own. The token is its own root-only file (`token-file` in config.yaml), so
config.yaml itself carries no secret and can be diffed and logged.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import yaml

from infra.model import Node, Testbed

K3S_BIN = "/usr/local/bin/k3s"
KEADM_BIN = "/usr/local/bin/keadm"
K3S_CONFIG = "/etc/rancher/k3s/config.yaml"
K3S_TOKEN_FILE = "/etc/rancher/k3s/edgerig-token"
K3S_AGENT_TOKEN_FILE = "/etc/rancher/k3s/edgerig-agent-token"  # servers only: what agents must present
K3S_KUBECONFIG = "/etc/rancher/k3s/k3s.yaml"
K3S_REGISTRIES = "/etc/rancher/k3s/registries.yaml"
K3S_DATA_DIR = "/var/lib/rancher/k3s"
# The secure (CA-pinning) tokens K3s writes on every server once it runs (docs.k3s.io/cli/token).
K3S_SERVER_TOKEN = f"{K3S_DATA_DIR}/server/token"
K3S_AGENT_TOKEN = f"{K3S_DATA_DIR}/server/agent-token"
K3S_IMAGES_DIR = f"{K3S_DATA_DIR}/agent/images"  # K3s imports every image tarball here at start
KEADM_DIR = "/etc/edgerig/kubeedge"  # not /etc/kubeedge: keadm refuses to join over an existing one
KUBEEDGE_TOKEN_FILE = f"{KEADM_DIR}/token"
API_PORT = 6443
CLOUDHUB_PORT = 10000
CLOUDHUB_HTTPS_PORT = 10002  # edges fetch their certificates here
CLOUDSTREAM_PORT = 10003
TUNNEL_PORT = 10004
CNI_BIN_DIR = "/usr/lib/cni"  # where Debian/Ubuntu's containernetworking-plugins installs them
# Where each registry is when no mirror is set (docker.io's API host is not docker.io itself).
REGISTRY_UPSTREAM = {"docker.io": "https://registry-1.docker.io"}


@dataclass(frozen=True)
class RenderedFile:
    path: str
    content: str
    mode: str = "0644"
    secret: bool = False  # delivered without logging its content (Ansible no_log)
    restarts: bool = True  # a change restarts its concern's service (scripts do not)


@dataclass(frozen=True)
class JoinTokens:
    """The secure tokens the running first server wrote: `K10<CA hash>::server:<secret>` for servers
    and `K10<CA hash>::node:<secret>` for agents. A joining node checks the server's CA against the
    hash before it sends the credential; a short token would trust whatever CA it is shown."""

    server: str
    agent: str


def agent_secret(testbed: Testbed) -> str:
    """The agent token's secret, derived from the cluster token (HMAC-SHA256, one-way): agents get a
    credential that joins agents only, and that cannot be turned back into the server token."""
    key = testbed.k3s.token.get_secret_value().encode()
    return hmac.new(key, b"edgerig k3s agent token v1", hashlib.sha256).hexdigest()


def join_token(testbed: Testbed, node: Node, tokens: JoinTokens | None) -> str:
    """What `node` presents: the first server its configured secret; later servers the server token,
    agents the agent token, in secure form once the first server wrote it."""
    if node.role == "server":
        if tokens is None or node.name == testbed.first_server.name:
            return testbed.k3s.token.get_secret_value()
        return tokens.server
    return tokens.agent if tokens is not None else agent_secret(testbed)


def service_name(node: Node) -> str:
    return "k3s" if node.role == "server" else "k3s-agent"


def uninstall_script_path(node: Node) -> str:
    if node.role == "edge":
        return "/usr/local/bin/edgerig-kubeedge-reset.sh"
    return f"/usr/local/bin/{service_name(node)}-uninstall.sh"


def _seconds(value: int) -> str:
    return f"{value}s"


def k3s_config(
    testbed: Testbed,
    node: Node,
    extra_tls_san: list[str] | None = None,
    addresses: dict[str, str] | None = None,
) -> dict[str, object]:
    """The K3s config.yaml content for one server or agent."""
    k3s = testbed.k3s
    addresses = addresses or {}
    own = addresses.get(node.name) or (str(node.address) if node.address else None)
    cfg: dict[str, object] = {"node-name": node.name, "token-file": K3S_TOKEN_FILE}
    spanning = bool(testbed.k3s_nodes_outside_the_cloud)
    if node.internal_address is not None and str(node.internal_address) != own:
        # A VM behind a floating IP: the cluster talks on the fixed IP, the outside uses the floating
        # one (and, when K3s nodes outside the cloud join, flannel too: flannel-external-ip).
        cfg["node-ip"] = str(node.internal_address)
        if own:
            cfg["node-external-ip"] = own
    elif own:
        cfg["node-ip"] = own
        if spanning and node.provider == "static":
            # K3s's multicloud setup: every node names the address the others reach it on.
            cfg["node-external-ip"] = own
    first = testbed.first_server
    if node.name != first.name:
        first_addr = addresses.get(first.name) or (str(first.address) if first.address else None)
        same_cloud = node.provider == first.provider == "openstack"
        if same_cloud and first.internal_address is not None:
            first_addr = str(first.internal_address)  # stay on the project network, no floating-IP hairpin
        if first_addr is None:
            raise ValueError(f"first server {first.name} has no address yet: pass it in `addresses`")
        cfg["server"] = f"https://{first_addr}:{API_PORT}"
    labels = testbed.kubelet_labels(node)
    if labels:
        cfg["node-label"] = [f"{k}={v}" for k, v in sorted(labels.items())]
    taints = testbed.node_taints(node)
    if taints:
        cfg["node-taint"] = [t.render() for t in taints]
    ff = k3s.fast_failover
    kubelet_args = []
    if ff.enabled:
        kubelet_args.append(f"node-status-update-frequency={_seconds(ff.node_status_update_frequency_s)}")
    if kubelet_args:
        cfg["kubelet-arg"] = kubelet_args
    if node.role != "server":
        return cfg
    if node.name == first.name:
        cfg["cluster-init"] = True
    san = [
        *testbed.api_endpoints,
        *(extra_tls_san or []),
        *(addresses[s.name] for s in testbed.servers if s.name in addresses),
    ]
    cfg["tls-san"] = list(dict.fromkeys(san))
    cfg["write-kubeconfig-mode"] = "0600"
    # Agents join with their own token (K3s agent-token): the server token stays on the servers.
    cfg["agent-token-file"] = K3S_AGENT_TOKEN_FILE
    if k3s.secrets_encryption:
        cfg["secrets-encryption"] = True
    cfg["flannel-backend"] = testbed.flannel_backend
    if spanning:
        # Flannel between public addresses: the VMs' fixed IPs are unreachable from outside the cloud.
        cfg["flannel-external-ip"] = True
    cfg["cluster-cidr"] = str(k3s.cluster_cidr)
    cfg["service-cidr"] = str(k3s.service_cidr)
    if k3s.disable:
        cfg["disable"] = list(k3s.disable)
    apiserver_args: list[str] = []
    if ff.enabled:
        cfg["kube-controller-manager-arg"] = [
            f"node-monitor-period={_seconds(ff.node_monitor_period_s)}",
            f"node-monitor-grace-period={_seconds(ff.node_monitor_grace_period_s)}",
        ]
        apiserver_args += [
            f"default-not-ready-toleration-seconds={ff.default_not_ready_toleration_seconds}",
            f"default-unreachable-toleration-seconds={ff.default_unreachable_toleration_seconds}",
        ]
    if testbed.edge_nodes:
        # EdgeCore nodes have no K3s agent tunnel: the apiserver must dial their "kubelet" (CloudCore's
        # iptables-manager DNATs it to CloudStream) directly, and CloudStream's certificate is signed
        # by KubeEdge's CA, not K3s's (KubeEdge FAQ; K3s sets kubelet-certificate-authority itself).
        cfg["egress-selector-mode"] = "disabled"
        apiserver_args.append("kubelet-certificate-authority=")
    if apiserver_args:
        cfg["kube-apiserver-arg"] = apiserver_args
    return cfg


def k3s_unit(node: Node) -> str:
    # Same shape as the unit the upstream install script writes, minus the script.
    kind = "server" if node.role == "server" else "agent"
    notify = "notify" if kind == "server" else "exec"
    return f"""[Unit]
Description=Lightweight Kubernetes ({kind}), installed by edgerig
Documentation=https://k3s.io
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type={notify}
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-/etc/systemd/system/{service_name(node)}.service.env
KillMode=process
Delegate=yes
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart={K3S_BIN} {kind}
"""


def k3s_env(node: Node) -> str:
    return (
        f"# rendered by edgerig for {node.name}; the token lives in {K3S_TOKEN_FILE}\n"
        f"K3S_CONFIG_FILE={K3S_CONFIG}\n"
    )


def killall_shell(
    shim_match: str, mount_prefixes: tuple[str, ...], links: tuple[str, ...], rule_filter: str
) -> str:
    """The stop-everything part of K3s's k3s-killall.sh: each shim's whole process tree killed with -9,
    the kubelet/CNI mounts and CNI network namespaces removed, the CNI state, its interfaces and its
    iptables rules deleted. Only shims in this host's network namespace: a test-fleet host shares the
    kernel (and /proc) with other hosts."""
    prefixes = " ".join(mount_prefixes)
    return f"""own_ns=$(readlink /proc/self/ns/net)
tree() {{
  echo "$1"
  for child in $(ps -e -o ppid= -o pid= | awk -v p="$1" '$1 == p {{print $2}}'); do tree "$child"; done
}}
for pid in $(ps -e -o pid= -o args= | awk '{shim_match} {{print $1}}'); do
  [ "$(readlink /proc/$pid/ns/net 2>/dev/null)" = "$own_ns" ] || continue
  kill -9 $(tree "$pid") 2>/dev/null || true
done
for prefix in {prefixes}; do
  awk -v p="$prefix" 'index($2, p) == 1 {{print $2}}' /proc/self/mounts | sort -r | while read -r m; do
    umount -f "$m" 2>/dev/null && rm -rf "$m"
  done
done
ip netns show 2>/dev/null | awk '/^cni-/ {{print $1}}' | while read -r ns; do ip netns delete "$ns"; done
ip link show 2>/dev/null | awk -F': ' '/master cni0/ {{split($2, a, "@"); print a[1]}}' | while read -r i; do
  ip link delete "$i"
done
for link in {" ".join(links)}; do ip link delete "$link" 2>/dev/null || true; done
rm -rf /var/lib/cni
for tables in iptables ip6tables; do
  command -v "$tables-save" >/dev/null || continue
  "$tables-save" | {rule_filter} | "$tables-restore" || true
done
"""


def k3s_uninstall_script(node: Node) -> str:
    """Stop K3s the way k3s-killall.sh does and remove everything it left, so the host can join again
    (the stale node password in /etc/rancher/node too)."""
    svc = service_name(node)
    killall = killall_shell(
        f'$2 ~ "^{K3S_DATA_DIR}/data/[^/]*/bin/containerd-shim"',
        ("/run/k3s", "/var/lib/kubelet/pods", "/var/lib/kubelet/plugins", "/run/netns/cni-"),
        ("cni0", "flannel.1", "flannel-v6.1", "kube-ipvs0", "flannel-wg", "flannel-wg-v6"),
        "grep -v KUBE- | grep -v CNI- | grep -iv flannel",
    )
    return f"""#!/bin/sh
# rendered by edgerig: returns {node.name} to its pre-K3s state
set -u
if [ -d /run/systemd/system ]; then
  systemctl disable --now {svc} 2>/dev/null || true
fi
{killall}rm -f /etc/systemd/system/{svc}.service /etc/systemd/system/{svc}.service.env {K3S_BIN}
[ -d /run/systemd/system ] && systemctl daemon-reload
rm -rf --one-file-system /etc/rancher/k3s /etc/rancher/node {K3S_DATA_DIR} /var/lib/kubelet
rm -rf /run/k3s /run/flannel
rmdir /etc/rancher /var/lib/rancher 2>/dev/null || true
rm -f "$0"
"""


def registry_endpoint(registry: str) -> str:
    return REGISTRY_UPSTREAM.get(registry, f"https://{registry}")


def registries_yaml(testbed: Testbed) -> str | None:
    """K3s's containerd pulls each registry through its own mirror (a pull-through cache serves one
    upstream); registries without one are pulled directly (or, air-gapped, not at all)."""
    mirrors = testbed.artefacts.registry_mirrors
    if not mirrors:
        return None
    doc = {"mirrors": {registry: {"endpoint": [url]} for registry, url in sorted(mirrors.items())}}
    header = "# rendered by edgerig: pull through the lab's registry mirrors\n"
    return header + yaml.safe_dump(doc, sort_keys=False)


def k3s_files(
    testbed: Testbed,
    node: Node,
    extra_tls_san: list[str] | None = None,
    addresses: dict[str, str] | None = None,
    join_tokens: JoinTokens | None = None,
) -> list[RenderedFile]:
    svc = service_name(node)
    config = k3s_config(testbed, node, extra_tls_san, addresses)
    registries = registries_yaml(testbed)
    extra = [RenderedFile(K3S_REGISTRIES, registries, "0600")] if registries else []
    token = join_token(testbed, node, join_tokens)
    # The secrets first: each is its own root-only file, written 0600 from the start.
    secrets = [RenderedFile(K3S_TOKEN_FILE, token + "\n", "0600", secret=True)]
    if node.role == "server":
        secrets.append(RenderedFile(K3S_AGENT_TOKEN_FILE, agent_secret(testbed) + "\n", "0600", secret=True))
    return [
        *secrets,
        *extra,
        RenderedFile(
            K3S_CONFIG,
            "# rendered by edgerig from the testbed model\n" + yaml.safe_dump(config, sort_keys=False),
            "0600",
        ),
        RenderedFile(f"/etc/systemd/system/{svc}.service", k3s_unit(node)),
        RenderedFile(f"/etc/systemd/system/{svc}.service.env", k3s_env(node), "0600"),
        RenderedFile(uninstall_script_path(node), k3s_uninstall_script(node), "0755", restarts=False),
    ]
