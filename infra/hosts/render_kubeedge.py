"""KubeEdge files: CloudCore's `keadm init`, the apiserver-side stream DNAT, EdgeCore's prerequisites
(containerd + CNI) and its `keadm join`, all rendered from the model.

KubeEdge v1.20 (pinned in infra/versions.py) is fully compatible with Kubernetes 1.28-1.30, so it
pairs with the pinned K3s v1.30. `kubectl logs/exec` and metrics-server reach an edge "kubelet" on
port 10350 through CloudCore's cloudStream (10003) and EdgeCore's edgeStream tunnel (10004): every
host running kube-apiserver DNATs 10350 to CloudCore:10003 (KubeEdge docs, "Enable kubectl logs/exec").
"""

from __future__ import annotations

import shlex
from ipaddress import IPv4Network

from infra.hosts.render import (
    CLOUDHUB_PORT,
    CLOUDSTREAM_PORT,
    CNI_BIN_DIR,
    EDGE_KUBELET_PORT,
    KEADM_BIN,
    KEADM_DIR,
    KUBEEDGE_TOKEN_FILE,
    TUNNEL_PORT,
    RenderedFile,
    uninstall_script_path,
)
from infra.model import Node, Testbed

LIB_DIR = "/usr/local/lib/edgerig"
KEADM_INIT_SCRIPT = f"{LIB_DIR}/keadm-init.sh"
KEADM_JOIN_SCRIPT = f"{LIB_DIR}/keadm-join.sh"
STREAM_DNAT_SCRIPT = f"{LIB_DIR}/stream-dnat.sh"
# Pod network of EdgeCore nodes: flannel stays off them, so each edge gets its own bridge subnet.
EDGE_POD_SUPERNET = IPv4Network("10.88.0.0/16")


def cloudcore_address(testbed: Testbed, addresses: dict[str, str] | None = None) -> str:
    if testbed.kubeedge.cloudcore_advertise_address is not None:
        return str(testbed.kubeedge.cloudcore_advertise_address)
    node = testbed.cloudcore_node
    if node is None:
        raise ValueError("KubeEdge is enabled but the testbed has no cloud server for CloudCore")
    addr = (addresses or {}).get(node.name) or (str(node.address) if node.address else None)
    if addr is None:
        raise ValueError(f"CloudCore node {node.name} has no address yet: pass it in `addresses`")
    return addr


def keadm_init_argv(testbed: Testbed, addresses: dict[str, str] | None = None) -> list[str]:
    return [
        KEADM_BIN,
        "init",
        f"--advertise-address={cloudcore_address(testbed, addresses)}",
        f"--kubeedge-version={testbed.kubeedge.version}",
        "--kube-config=/etc/rancher/k3s/k3s.yaml",
        "--set",
        "cloudCore.modules.cloudStream.enable=true",
        # dynamicController serves EdgeMesh's and metaServer's list/watch from the edge.
        "--set",
        "cloudCore.modules.dynamicController.enable=true",
    ]


def keadm_join_argv(testbed: Testbed, node: Node, addresses: dict[str, str] | None = None) -> list[str]:
    cloud = cloudcore_address(testbed, addresses)
    labels = ",".join(f"{k}={v}" for k, v in sorted(testbed.kubelet_labels(node).items()))
    argv = [
        KEADM_BIN,
        "join",
        f"--cloudcore-ipport={cloud}:{CLOUDHUB_PORT}",
        f"--kubeedge-version={testbed.kubeedge.version}",
        f"--edgenode-name={node.name}",
        "--remote-runtime-endpoint=unix:///run/containerd/containerd.sock",
        "--cgroupdriver=systemd",
        "--set",
        f"modules.edgeStream.enable=true,modules.edgeStream.server={cloud}:{TUNNEL_PORT}",
        "--set",
        "modules.metaManager.metaServer.enable=true",
    ]
    if labels:
        argv.append(f"--labels={labels}")
    return argv


def _script(body: str) -> str:
    return f"#!/bin/sh\n# rendered by edgerig from the testbed model\nset -eu\n{body}"


def stream_dnat_script(testbed: Testbed, addresses: dict[str, str] | None = None) -> str:
    # The apiserver hosts are in the cloud with CloudCore: use its cluster-network address if known.
    node = testbed.cloudcore_node
    target = (
        str(node.internal_address)
        if node and node.internal_address
        else cloudcore_address(testbed, addresses)
    )
    rule = f"OUTPUT -p tcp --dport {EDGE_KUBELET_PORT} -j DNAT --to-destination {target}:{CLOUDSTREAM_PORT}"
    return _script(
        "# usage: stream-dnat.sh add|delete|check   (idempotent: checks with -C first)\n"
        f"if iptables -t nat -C {rule} 2>/dev/null; then present=1; else present=0; fi\n"
        f'case "${{1:-add}}" in\n'
        f'  add) [ "$present" = 1 ] && echo unchanged || {{ iptables -t nat -A {rule}; echo changed; }} ;;\n'
        f'  delete) [ "$present" = 0 ] && echo unchanged '
        f"|| {{ iptables -t nat -D {rule}; echo changed; }} ;;\n"
        '  check) [ "$present" = 1 ] ;;\n'
        '  *) echo "usage: $0 add|delete|check" >&2; exit 2 ;;\n'
        "esac\n"
    )


def containerd_config() -> str:
    return (
        "# rendered by edgerig: EdgeCore talks CRI to containerd with the systemd cgroup driver\n"
        "version = 2\n"
        '[plugins."io.containerd.grpc.v1.cri".cni]\n'
        f'  bin_dir = "{CNI_BIN_DIR}"\n'
        '  conf_dir = "/etc/cni/net.d"\n'
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\n'
        "  SystemdCgroup = true\n"
    )


def edge_pod_subnet(testbed: Testbed, node: Node) -> IPv4Network:
    index = [n.name for n in testbed.edge_nodes].index(node.name)
    return list(EDGE_POD_SUPERNET.subnets(new_prefix=24))[index]


def cni_conflist(testbed: Testbed, node: Node) -> str:
    import json

    subnet = edge_pod_subnet(testbed, node)
    return (
        json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "edgerig-edge",
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": "cni0",
                        "isGateway": True,
                        "ipMasq": True,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{"subnet": str(subnet)}]],
                            "routes": [{"dst": "0.0.0.0/0"}],
                        },
                    },
                    {"type": "portmap", "capabilities": {"portMappings": True}},
                ],
            },
            indent=2,
        )
        + "\n"
    )


def edge_reset_script() -> str:
    # /etc/kubeedge left behind makes the next `keadm join` fail: the known trap, removed here.
    return _script(
        "if [ -x /usr/local/bin/keadm ] && [ -d /run/systemd/system ]; then\n"
        "  keadm reset edge --force || true\n"
        "fi\n"
        "rm -rf /etc/kubeedge /var/lib/kubeedge /var/log/kubeedge /etc/edgerig\n"
        f"rm -f {KEADM_BIN} /etc/cni/net.d/10-edgerig.conflist {KEADM_JOIN_SCRIPT}\n"
        f"rmdir {LIB_DIR} 2>/dev/null || true\n"
        'rm -f "$0"\n'
    )


def cloudcore_files(testbed: Testbed, addresses: dict[str, str] | None = None) -> list[RenderedFile]:
    return [
        RenderedFile(
            KEADM_INIT_SCRIPT, _script(shlex.join(keadm_init_argv(testbed, addresses)) + "\n"), "0755"
        )
    ]


def apiserver_files(testbed: Testbed, addresses: dict[str, str] | None = None) -> list[RenderedFile]:
    return [RenderedFile(STREAM_DNAT_SCRIPT, stream_dnat_script(testbed, addresses), "0755")]


def edge_files(testbed: Testbed, node: Node, addresses: dict[str, str] | None = None) -> list[RenderedFile]:
    join = shlex.join(keadm_join_argv(testbed, node, addresses))
    return [
        RenderedFile("/etc/containerd/config.toml", containerd_config()),
        RenderedFile("/etc/cni/net.d/10-edgerig.conflist", cni_conflist(testbed, node)),
        # The token is read at run time so it never appears in a rendered file or a process list log.
        RenderedFile(KEADM_JOIN_SCRIPT, _script(f'{join} --token="$(cat {KUBEEDGE_TOKEN_FILE})"\n'), "0755"),
        RenderedFile(uninstall_script_path(node), edge_reset_script(), "0755"),
        RenderedFile(
            f"{KEADM_DIR}/join-settings.yaml",
            f"# what keadm-join.sh passes to keadm (for review; the script is the source)\ncommand: {join}\n",
        ),
    ]
