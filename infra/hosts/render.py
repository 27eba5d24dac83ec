"""Every per-host file, rendered in Python from the Testbed model (DESIGN principle 1).

pyinfra and Ansible only deliver these files and run the guarded commands; they hold no flag, port,
token or version of their own. The token is its own root-only file (`token-file` in config.yaml), so
config.yaml itself carries no secret and can be diffed and logged.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from infra.model import Node, Testbed

K3S_BIN = "/usr/local/bin/k3s"
KEADM_BIN = "/usr/local/bin/keadm"
K3S_CONFIG = "/etc/rancher/k3s/config.yaml"
K3S_TOKEN_FILE = "/etc/rancher/k3s/edgerig-token"
KEADM_DIR = "/etc/edgerig/kubeedge"  # not /etc/kubeedge: keadm refuses to join over an existing one
KUBEEDGE_TOKEN_FILE = f"{KEADM_DIR}/token"
API_PORT = 6443
CLOUDHUB_PORT = 10000
CLOUDSTREAM_PORT = 10003
TUNNEL_PORT = 10004
EDGE_KUBELET_PORT = 10350
CNI_BIN_DIR = "/usr/lib/cni"  # where Debian/Ubuntu's containernetworking-plugins installs them


@dataclass(frozen=True)
class RenderedFile:
    path: str
    content: str
    mode: str = "0644"
    secret: bool = False  # delivered without logging its content (Ansible no_log)


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
    if node.internal_address is not None and str(node.internal_address) != own:
        # A VM behind a floating IP: the cluster talks on the fixed IP, the outside (and
        # metrics-server's ExternalIP preference) uses the floating one.
        cfg["node-ip"] = str(node.internal_address)
        if own:
            cfg["node-external-ip"] = own
    elif own:
        cfg["node-ip"] = own
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
    cfg["flannel-backend"] = k3s.flannel_backend
    cfg["cluster-cidr"] = str(k3s.cluster_cidr)
    cfg["service-cidr"] = str(k3s.service_cidr)
    if k3s.disable:
        cfg["disable"] = list(k3s.disable)
    if ff.enabled:
        cfg["kube-controller-manager-arg"] = [
            f"node-monitor-period={_seconds(ff.node_monitor_period_s)}",
            f"node-monitor-grace-period={_seconds(ff.node_monitor_grace_period_s)}",
        ]
        cfg["kube-apiserver-arg"] = [
            f"default-not-ready-toleration-seconds={ff.default_not_ready_toleration_seconds}",
            f"default-unreachable-toleration-seconds={ff.default_unreachable_toleration_seconds}",
        ]
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


def k3s_uninstall_script(node: Node) -> str:
    """Stop K3s and remove everything it left, so the host can join again (stale node password too)."""
    svc = service_name(node)
    return f"""#!/bin/sh
# rendered by edgerig: returns {node.name} to its pre-K3s state
set -u
if [ -d /run/systemd/system ]; then
  systemctl disable --now {svc} 2>/dev/null || true
  systemctl daemon-reload
fi
if [ -x {K3S_BIN} ] && [ -d /run/systemd/system ]; then
  # Only shims in this host's network namespace: on a test-fleet host other processes are not ours.
  own_ns=$(readlink /proc/self/ns/net)
  for pid in $(pgrep -f containerd-shim-runc); do
    [ "$(readlink /proc/$pid/ns/net)" = "$own_ns" ] && kill "$pid" 2>/dev/null
  done
  for m in $(awk '$2 ~ "^/run/k3s|^/var/lib/kubelet/pods" {{print $2}}' /proc/self/mounts | sort -r); do
    umount "$m" 2>/dev/null || true
  done
  ip link delete cni0 2>/dev/null || true
  ip link delete flannel.1 2>/dev/null || true
fi
rm -f /etc/systemd/system/{svc}.service /etc/systemd/system/{svc}.service.env {K3S_BIN}
rm -rf /etc/rancher/k3s /etc/rancher/node /var/lib/rancher/k3s /var/lib/kubelet /run/k3s /run/flannel
rmdir /etc/rancher /var/lib/rancher 2>/dev/null || true
rm -f "$0"
"""


def registries_yaml(testbed: Testbed) -> str | None:
    mirror = testbed.artefacts.registry_mirror
    if mirror is None:
        return None
    mirrors = {registry: {"endpoint": [mirror]} for registry in ("docker.io", "ghcr.io", "registry.k8s.io")}
    return "# rendered by edgerig: pull through the lab's registry mirror\n" + yaml.safe_dump(
        {"mirrors": mirrors}, sort_keys=False
    )


def k3s_files(
    testbed: Testbed,
    node: Node,
    extra_tls_san: list[str] | None = None,
    addresses: dict[str, str] | None = None,
) -> list[RenderedFile]:
    svc = service_name(node)
    config = k3s_config(testbed, node, extra_tls_san, addresses)
    registries = registries_yaml(testbed)
    extra = [RenderedFile("/etc/rancher/k3s/registries.yaml", registries, "0600")] if registries else []
    return [
        *extra,
        RenderedFile(
            K3S_CONFIG,
            "# rendered by edgerig from the testbed model\n" + yaml.safe_dump(config, sort_keys=False),
            "0600",
        ),
        RenderedFile(K3S_TOKEN_FILE, testbed.k3s.token.get_secret_value() + "\n", "0600", secret=True),
        RenderedFile(f"/etc/systemd/system/{svc}.service", k3s_unit(node)),
        RenderedFile(f"/etc/systemd/system/{svc}.service.env", k3s_env(node), "0600"),
        RenderedFile(uninstall_script_path(node), k3s_uninstall_script(node), "0755"),
    ]
