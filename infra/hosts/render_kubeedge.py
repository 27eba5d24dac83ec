"""KubeEdge files: CloudCore's `keadm init`, EdgeCore's prerequisites (containerd + CNI) and its
`keadm join`, all rendered from the model. Checked against the v1.20.0 tag of kubeedge/kubeedge.

- Streaming (`kubectl logs/exec`, metrics-server): CloudCore v1.20 gives every edge node a tunnel port
  from 10351 up, writes it into the Node's kubelet endpoint, and its iptables-manager DaemonSet
  (on by default, every non-edge node) DNATs that port to CloudStream (10003). Nothing to add here;
  K3s only has to dial the edges directly (render.k3s_config: egress-selector-mode, kubelet CA).
- `keadm init` waits 60 s for Helm; it runs with --force here and this script waits for the
  rollout itself, then leaves a marker: a timed-out init is never counted as done.
- `keadm join` pulls kubeedge/installation-package through CRI and copies edgecore out of it (it no
  longer downloads the release tarball): both images are pulled by their pinned digest first, so
  keadm finds them present. Its `--set` cannot take a duration, so EdgeCore's status period is set in
  the edgecore.yaml it wrote, and edgecore restarted once.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from ipaddress import IPv4Network

from infra import versions
from infra.hosts.render import (
    CLOUDHUB_PORT,
    CNI_BIN_DIR,
    K3S_BIN,
    KEADM_BIN,
    KEADM_DIR,
    KUBEEDGE_TOKEN_FILE,
    TUNNEL_PORT,
    RenderedFile,
    killall_shell,
    registry_endpoint,
    uninstall_script_path,
)
from infra.model import Node, Testbed
from infra.versions import Pin

LIB_DIR = "/usr/local/lib/edgerig"
STATE_DIR = "/var/lib/edgerig/kubeedge"
KEADM_INIT_SCRIPT = f"{LIB_DIR}/keadm-init.sh"
KEADM_JOIN_SCRIPT = f"{LIB_DIR}/keadm-join.sh"
CNI_SELECT_SCRIPT = f"{LIB_DIR}/cni-config.sh"
CLOUDCORE_READY = f"{STATE_DIR}/cloudcore-ready"  # written only once CloudCore's rollout finished
EDGE_JOINED = f"{STATE_DIR}/joined"  # written only after a complete join
EDGECORE_CONFIG = "/etc/kubeedge/config/edgecore.yaml"
CONTAINERD_CONFIG = "/etc/containerd/config.toml"
CONTAINERD_HOSTS_DIR = "/etc/containerd/certs.d"
CNI_CONFIG = "/etc/cni/net.d/10-edgerig.conflist"
CNI_CANDIDATES_DIR = f"{KEADM_DIR}/cni"
# Newest first; the host's bridge plugin says which it supports (Ubuntu 22.04 ships 0.9.1: <= 0.4.0).
CNI_VERSIONS = ("1.0.0", "0.4.0")
EDGE_PACKAGES = ("containerd", "containernetworking-plugins")
# Pod network of EdgeCore nodes: flannel stays off them, so each edge gets its own bridge subnet.
EDGE_POD_SUPERNET = IPv4Network("10.88.0.0/16")
# EdgeMesh's DNS listens on its bridge device's address (edgemesh commonConfig.bridgeDeviceIP default).
EDGEMESH_DNS = "169.254.96.16"
# Everything keadm v1.20 creates on an edge (util.CleanDirectories), plus the CNI state.
EDGE_STATE_DIRS = (
    "/etc/kubeedge", "/var/lib/kubeedge", "/var/lib/edged", "/var/log/kubeedge", "/var/lib/kubelet"
)


def cloudcore_address(testbed: Testbed, addresses: Mapping[str, str] | None = None) -> str:
    if testbed.kubeedge.cloudcore_advertise_address is not None:
        return str(testbed.kubeedge.cloudcore_advertise_address)
    node = testbed.cloudcore_node
    if node is None:
        raise ValueError("KubeEdge is enabled but the testbed has no cloud server for CloudCore")
    addr = (addresses or {}).get(node.name) or (str(node.address) if node.address else None)
    if addr is None:
        raise ValueError(f"CloudCore node {node.name} has no address yet: pass it in `addresses`")
    return addr


def _pins(pins: Mapping[str, Pin] | None) -> Mapping[str, Pin]:
    return versions.ARTEFACT_PINS if pins is None else pins


def _images(testbed: Testbed, pins: Mapping[str, Pin] | None) -> dict[str, str]:
    """name -> image reference by digest (tag@sha256:...)."""
    from infra.hosts.artefacts import kubeedge_images

    images = kubeedge_images(testbed.kubeedge.version)
    return {name: img.by_digest(_pins(pins)) for name, img in images.items()}


def _tag_and_digest(reference: str) -> str:
    """'docker.io/kubeedge/cloudcore:v1.20.0@sha256:ab..' -> 'v1.20.0@sha256:ab..' (the chart's tag)."""
    return reference.rsplit("/", 1)[-1].split(":", 1)[1]


def keadm_init_argv(
    testbed: Testbed, addresses: Mapping[str, str] | None = None, pins: Mapping[str, Pin] | None = None
) -> list[str]:
    node = testbed.cloudcore_node
    assert node is not None
    images = _images(testbed, pins)
    sets = [
        "cloudCore.modules.cloudStream.enable=true",
        # dynamicController serves EdgeMesh's and metaServer's list/watch from the edge.
        "cloudCore.modules.dynamicController.enable=true",
        # CloudCore stays on the node the edges dial (the chart's nodeSelector is empty): a fast
        # eviction must not move it to another cloud node.
        f"cloudCore.nodeSelector.kubernetes\\.io/hostname={node.name}",
        # The chart's tag is used as is: tag@digest makes containerd pull and check the pinned image.
        f"cloudCore.image.tag={_tag_and_digest(images['cloudcore'])}",
        f"iptablesManager.image.tag={_tag_and_digest(images['iptables-manager'])}",
        # The MQTT broker DaemonSet for device twins is not used by the testbed (and its image unpinned).
        "mosquitto.enable=false",
    ]
    argv = [
        KEADM_BIN,
        "init",
        f"--advertise-address={cloudcore_address(testbed, addresses)}",
        f"--kubeedge-version={testbed.kubeedge.version}",
        "--kube-config=/etc/rancher/k3s/k3s.yaml",
        # keadm's own Helm wait is 60 s, too short for a first image pull on a small VM; the init
        # script waits for the rollout instead (10 min).
        "--force",
    ]
    for item in sets:
        argv += ["--set", item]
    return argv


def keadm_join_argv(testbed: Testbed, node: Node, addresses: Mapping[str, str] | None = None) -> list[str]:
    cloud = cloudcore_address(testbed, addresses)
    labels = ",".join(f"{k}={v}" for k, v in sorted(testbed.kubelet_labels(node).items()))
    sets = [
        f"modules.edgeStream.enable=true,modules.edgeStream.server={cloud}:{TUNNEL_PORT}",
        # metaServer: the edge Kube-API endpoint EdgeMesh lists Services and Endpoints from.
        "modules.metaManager.metaServer.enable=true",
    ]
    if testbed.edgemesh_enabled:
        sets.append(
            f"modules.edged.tailoredKubeletConfig.clusterDNS={{{EDGEMESH_DNS}}},"
            f"modules.edged.tailoredKubeletConfig.clusterDomain={versions.K3S_CLUSTER_DOMAIN}"
        )
    argv = [
        KEADM_BIN,
        "join",
        f"--cloudcore-ipport={cloud}:{CLOUDHUB_PORT}",
        f"--kubeedge-version={testbed.kubeedge.version}",
        f"--edgenode-name={node.name}",
        "--remote-runtime-endpoint=unix:///run/containerd/containerd.sock",
        "--cgroupdriver=systemd",
    ]
    for item in sets:
        argv += ["--set", item]
    if labels:
        argv.append(f"--labels={labels}")
    return argv


def _script(body: str) -> str:
    return f"#!/bin/sh\n# rendered by edgerig from the testbed model\nset -eu\n{body}"


def keadm_init_script(
    testbed: Testbed, addresses: Mapping[str, str] | None = None, pins: Mapping[str, Pin] | None = None
) -> str:
    kubectl = f"{K3S_BIN} kubectl --kubeconfig=/etc/rancher/k3s/k3s.yaml"
    return _script(
        f"kubectl={shlex.quote(kubectl)}\n"
        "# Helm keeps a release as a secret; a release that exists is upgraded by `keadm upgrade`, never\n"
        "# initialised twice (keadm refuses that).\n"
        "release=$($kubectl -n kubeedge get secret -l owner=helm,name=cloudcore -o name || true)\n"
        'if [ -z "$release" ]; then\n'
        f"  {shlex.join(keadm_init_argv(testbed, addresses, pins))}\n"
        "fi\n"
        "$kubectl -n kubeedge rollout status deployment/cloudcore --timeout=600s\n"
        f"mkdir -p {STATE_DIR} && touch {CLOUDCORE_READY}\n"
    )


def containerd_config(testbed: Testbed, pins: Mapping[str, Pin] | None = None) -> str:
    """containerd for EdgeCore: the systemd cgroup driver EdgeCore is told, the pinned pause image, the
    Debian/Ubuntu CNI plugin directory and per-registry mirrors (hosts.toml files). runtime_type is
    repeated on purpose: a runtimes.runc table without it replaces containerd's default runc entry."""
    pause = _images(testbed, pins)["pause"]
    return (
        "# rendered by edgerig: EdgeCore talks CRI to containerd with the systemd cgroup driver\n"
        "version = 2\n"
        '[plugins."io.containerd.grpc.v1.cri"]\n'
        f'  sandbox_image = "{pause}"\n'
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\n'
        '  runtime_type = "io.containerd.runc.v2"\n'
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\n'
        "  SystemdCgroup = true\n"
        '[plugins."io.containerd.grpc.v1.cri".cni]\n'
        f'  bin_dir = "{CNI_BIN_DIR}"\n'
        '  conf_dir = "/etc/cni/net.d"\n'
        '[plugins."io.containerd.grpc.v1.cri".registry]\n'
        f'  config_path = "{CONTAINERD_HOSTS_DIR}"\n'
    )


def containerd_hosts_files(testbed: Testbed) -> list[RenderedFile]:
    out = []
    for registry, mirror in sorted(testbed.artefacts.registry_mirrors.items()):
        text = (
            "# rendered by edgerig: pull through the lab's mirror of this registry\n"
            f'server = "{registry_endpoint(registry)}"\n\n'
            f'[host."{mirror}"]\n'
            '  capabilities = ["pull", "resolve"]\n'
        )
        out.append(RenderedFile(f"{CONTAINERD_HOSTS_DIR}/{registry}/hosts.toml", text))
    return out


def edge_pod_subnet(testbed: Testbed, node: Node) -> IPv4Network:
    index = [n.name for n in testbed.edge_nodes].index(node.name)
    return list(EDGE_POD_SUPERNET.subnets(new_prefix=24))[index]


def cni_conflist(testbed: Testbed, node: Node, cni_version: str) -> str:
    subnet = edge_pod_subnet(testbed, node)
    doc = {
        "cniVersion": cni_version,
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
    }
    return json.dumps(doc, indent=2) + "\n"


def cni_select_script() -> str:
    """Installs the newest rendered conflist whose cniVersion the host's bridge plugin supports."""
    versions_list = " ".join(CNI_VERSIONS)
    return _script(
        "# usage: cni-config.sh apply|check\n"
        f"supported=$(CNI_COMMAND=VERSION {CNI_BIN_DIR}/bridge </dev/null 2>/dev/null || true)\n"
        "chosen=\n"
        f"for v in {versions_list}; do\n"
        '  case "$supported" in *"\\"$v\\""*) chosen=$v; break ;; esac\n'
        "done\n"
        'if [ -z "$chosen" ]; then\n'
        f'  echo "{CNI_BIN_DIR}/bridge supports none of {versions_list} (it says: $supported)" >&2; exit 1\n'
        "fi\n"
        f'src={CNI_CANDIDATES_DIR}/10-edgerig-$chosen.conflist dst={CNI_CONFIG}\n'
        'case "${1:-apply}" in\n'
        '  check) cmp -s "$src" "$dst" ;;\n'
        '  apply) cmp -s "$src" "$dst" || { mkdir -p "$(dirname "$dst")"; cp "$src" "$dst.tmp"; '
        'mv "$dst.tmp" "$dst"; echo "cniVersion $chosen"; } ;;\n'
        '  *) echo "usage: $0 apply|check" >&2; exit 2 ;;\n'
        "esac\n"
    )


def _prepull(image_by_digest: str) -> str:
    """ctr pulls by digest (through the registry mirrors) and tags it as keadm names it."""
    tag_ref = image_by_digest.split("@", 1)[0]
    return (
        f"ctr -n k8s.io images pull --hosts-dir {CONTAINERD_HOSTS_DIR} "
        f"{shlex.quote(image_by_digest)} >/dev/null\n"
        f"ctr -n k8s.io images tag --force {shlex.quote(image_by_digest)} {shlex.quote(tag_ref)} >/dev/null\n"
    )


def keadm_join_script(
    testbed: Testbed,
    node: Node,
    addresses: Mapping[str, str] | None = None,
    pins: Mapping[str, Pin] | None = None,
) -> str:
    images = _images(testbed, pins)
    join = shlex.join(keadm_join_argv(testbed, node, addresses))
    frequency = f"{testbed.k3s.fast_failover.node_status_update_frequency_s}s"
    state = " ".join(EDGE_STATE_DIRS)
    status = ""
    if testbed.k3s.fast_failover.enabled:
        status = (
            "# EdgeCore reports its status every 10 s by default: as often as the K3s kubelets instead\n"
            f"sed -i 's/^\\( *nodeStatusUpdateFrequency:\\).*/\\1 {frequency}/' {EDGECORE_CONFIG}\n"
            "systemctl restart edgecore\n"
        )
    return _script(
        "# A join that stopped half-way leaves /etc/kubeedge behind, and keadm refuses to join over it.\n"
        'if [ -n "$(ls -A /etc/kubeedge 2>/dev/null)" ]; then\n'
        f"  {KEADM_BIN} reset edge --force || true\n"
        f"  rm -rf {state}\n"
        "fi\n"
        + _prepull(images["installation-package"])
        + _prepull(images["pause"])
        + f'{join} --token="$(cat {KUBEEDGE_TOKEN_FILE})"\n'
        + status
        + f"mkdir -p {STATE_DIR} && touch {EDGE_JOINED}\n"
    )


def edge_reset_script(testbed: Testbed) -> str:
    """keadm reset edge, then what it leaves: its container cleanup needs crictl, and v1.20's
    CleanDirectories stops at the first directory that does not exist. containerd, its config.toml
    and the packages stay (host preparation, as on K3s hosts)."""
    killall = killall_shell(
        # Only the shims of Kubernetes' containerd namespace: other containers on the host are not ours.
        '$2 ~ "^/usr/bin/containerd-shim" && / -namespace k8s[.]io /',
        ("/var/lib/kubelet/pods", "/var/lib/kubelet/plugins", "/var/lib/edged", "/run/netns/cni-"),
        ("cni0", "edgemesh0"),
        "grep -v KUBE- | grep -v CNI-",
    )
    state = " ".join(EDGE_STATE_DIRS)
    return _script(
        "set +e\n"
        "if [ -d /run/systemd/system ]; then\n"
        f"  [ -x {KEADM_BIN} ] && {KEADM_BIN} reset edge --force\n"
        "  systemctl disable --now edgecore 2>/dev/null\n"
        "  rm -f /etc/systemd/system/edgecore.service && systemctl daemon-reload\n"
        "fi\n"
        + killall
        + f"rm -rf --one-file-system {state} /etc/edgerig /var/lib/edgerig\n"
        + "".join(f"rm -rf {CONTAINERD_HOSTS_DIR}/{r}\n" for r in sorted(testbed.artefacts.registry_mirrors))
        + f"rmdir {CONTAINERD_HOSTS_DIR} 2>/dev/null\n"
        f"rm -f {KEADM_BIN} /usr/local/bin/edgecore {CNI_CONFIG}\n"
        f"rm -f {KEADM_JOIN_SCRIPT} {CNI_SELECT_SCRIPT}\n"
        f"rmdir {LIB_DIR} 2>/dev/null\n"
        'rm -f "$0"\n'
    )


def cloudcore_files(
    testbed: Testbed, addresses: Mapping[str, str] | None = None, pins: Mapping[str, Pin] | None = None
) -> list[RenderedFile]:
    script = keadm_init_script(testbed, addresses, pins)
    return [RenderedFile(KEADM_INIT_SCRIPT, script, "0755", restarts=False)]


def edge_files(
    testbed: Testbed,
    node: Node,
    addresses: Mapping[str, str] | None = None,
    pins: Mapping[str, Pin] | None = None,
) -> list[RenderedFile]:
    join = shlex.join(keadm_join_argv(testbed, node, addresses))
    candidates = [
        RenderedFile(
            f"{CNI_CANDIDATES_DIR}/10-edgerig-{v}.conflist", cni_conflist(testbed, node, v), restarts=False
        )
        for v in CNI_VERSIONS
    ]
    # Only containerd's own configuration restarts containerd.
    return [
        RenderedFile(CONTAINERD_CONFIG, containerd_config(testbed, pins)),
        *containerd_hosts_files(testbed),
        *candidates,
        RenderedFile(CNI_SELECT_SCRIPT, cni_select_script(), "0755", restarts=False),
        # The token is read at run time so it never appears in a rendered file or a process list log.
        RenderedFile(
            KEADM_JOIN_SCRIPT, keadm_join_script(testbed, node, addresses, pins), "0755", restarts=False
        ),
        RenderedFile(uninstall_script_path(node), edge_reset_script(testbed), "0755", restarts=False),
        RenderedFile(
            f"{KEADM_DIR}/join-settings.yaml",
            f"# what keadm-join.sh passes to keadm (for review; the script is the source)\ncommand: {join}\n",
            restarts=False,
        ),
    ]
