"""Rendering and ordering from the model, the run directory both tools read, and the role inputs
declared the same in Python, Ansible and pyinfra (no root, no fleet needed)."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from edgerig_deploy import airgap_images, common, host_firewall, k3s, kubeedge, raspberrypi
from edgerig_deploy.raspberrypi import merged_cmdline
from hosts_support import K3S_KEY, TOKEN, Mirror, image_pins

from infra.hosts import api, node_objects, render, render_kubeedge, run_dir
from infra.hosts.artefacts import fetch, k3s_binary
from infra.hosts.inventory import targets_from_nodes
from infra.hosts.plan import CGROUP_FLAGS, ROLE_INPUTS, HostPlan, install_plan, tool_for
from infra.model import Testbed

BIN = Path(sys.executable).parent
ROLES_DIR = Path(__file__).resolve().parents[2] / "playbooks" / "ansible" / "roles"
VM = {"realm": "cloud", "role": "server", "provider": "openstack", "flavor": "m1.large", "image": "ubuntu"}
OPENSTACK = {"external_network": "public", "public_key": "ssh-ed25519 AAAAC3 test"}
KNOWN_HOSTS = "/nonexistent/edgerig-test/known_hosts"  # only named in options: these tests never connect


def _testbed(mirror_url: str = "http://127.0.0.1:9", **extra: Any) -> Testbed:
    nodes = [
        {"name": "m0", "realm": "cloud", "role": "server", "provider": "static", "address": "192.0.2.10"},
        {
            "name": "e0",
            "realm": "edge",
            "role": "edge",
            "provider": "static",
            "address": "192.0.2.20",
            "model": "raspberry-pi-4-8gb",
            "os": "raspios",
            "arch": "arm64",
        },
        {"name": "m1", "realm": "cloud", "role": "server", "provider": "static", "address": "192.0.2.11"},
        {"name": "a0", "realm": "cloud", "role": "agent", "provider": "static", "address": "192.0.2.12"},
        {"name": "m2", "realm": "cloud", "role": "server", "provider": "static", "address": "192.0.2.13"},
    ]
    return Testbed.model_validate(
        {
            "name": "t",
            "nodes": nodes,
            "k3s": {"token": TOKEN},
            "vei": {"enabled": False},
            "artefacts": {"base_url": mirror_url},
            **extra,
        }
    )


def _hybrid(**k3s: Any) -> Testbed:
    """Three VMs behind floating IPs and two Pis outside the cloud joining as K3s agents."""
    nodes = [{"name": f"vm{i}", **VM} for i in range(3)] + [
        {
            "name": f"pi{i}",
            "realm": "edge",
            "role": "agent",
            "provider": "static",
            "address": f"198.51.100.2{i}",
            "model": "raspberry-pi-4-8gb",
            "os": "raspios",
            "arch": "arm64",
        }
        for i in range(2)
    ]
    tb = Testbed.model_validate(
        {
            "name": "hybrid",
            "nodes": nodes,
            "k3s": {"token": TOKEN, **k3s},
            "vei": {"enabled": False},
            "openstack": OPENSTACK,
            "admin_cidrs": ["203.0.113.0/24"],
        }
    )
    return tb.with_deploy_addresses(
        {f"vm{i}": f"203.0.113.1{i}" for i in range(3)}, {f"vm{i}": f"192.168.50.1{i}" for i in range(3)}
    )


def test_install_order_servers_one_by_one_then_cloud_then_edge() -> None:
    tb = _testbed(kubeedge={"enabled": True})
    stages = [[n.name for n in s] for s in api.install_stages(tb, tb.nodes)]
    assert stages == [["m0"], ["m1"], ["m2"], ["a0"], ["e0"]]


def test_floating_ip_in_tls_san_and_no_secret_in_config() -> None:
    tb = _testbed()
    files = {f.path: f for f in render.k3s_files(tb, tb.node("m1"), extra_tls_san=["203.0.113.5"])}
    cfg = yaml.safe_load(files[render.K3S_CONFIG].content)
    assert "203.0.113.5" in cfg["tls-san"] and cfg["server"] == "https://192.0.2.10:6443"
    assert TOKEN not in files[render.K3S_CONFIG].content and files[render.K3S_TOKEN_FILE].secret
    assert render.K3S_REGISTRIES not in files
    assert (
        "egress-selector-mode" not in cfg
        and "kubelet-certificate-authority=" not in cfg["kube-apiserver-arg"]
    )


def test_fast_failover_off_leaves_kubernetes_defaults() -> None:
    tb = _testbed(k3s={"token": TOKEN, "fast_failover": {"enabled": False}})
    cfg = render.k3s_config(tb, tb.node("m0"))
    assert not {"kube-controller-manager-arg", "kube-apiserver-arg", "kubelet-arg"} & set(cfg)


def test_each_registry_is_pulled_through_its_own_mirror() -> None:
    mirrors = {"docker.io": "http://docker-cache.lab:5000/", "quay.io": "http://quay-cache.lab:5001"}
    tb = _testbed(artefacts={"base_url": "http://mirror.lab", "registry_mirrors": mirrors})
    files = {f.path: f.content for f in render.k3s_files(tb, tb.node("a0"))}
    doc = yaml.safe_load(files[render.K3S_REGISTRIES])
    assert doc["mirrors"] == {
        "docker.io": {"endpoint": ["http://docker-cache.lab:5000"]},
        "quay.io": {"endpoint": ["http://quay-cache.lab:5001"]},
    }
    with pytest.raises(
        ValueError, match=r"artefacts.registryMirrors.quay.io 'quay-cache.lab' must be an http"
    ):
        _testbed(artefacts={"registry_mirrors": {"quay.io": "quay-cache.lab"}})
    with pytest.raises(ValueError, match="must be a registry host name"):
        _testbed(artefacts={"registry_mirrors": {"docker": "http://x.lab"}})


def test_edgecore_nodes_make_the_apiserver_dial_kubelets_directly() -> None:
    tb = _testbed(kubeedge={"enabled": True})
    for name in ("m0", "m1"):
        cfg = render.k3s_config(tb, tb.node(name))
        assert cfg["egress-selector-mode"] == "disabled"  # EdgeCore nodes have no K3s agent tunnel
        assert (
            "kubelet-certificate-authority=" in cfg["kube-apiserver-arg"]
        )  # CloudStream's cert is KubeEdge's
    assert "egress-selector-mode" not in render.k3s_config(tb, tb.node("a0"))  # a server flag only


def test_k3s_agents_behind_floating_ips_use_flannel_over_public_addresses() -> None:
    tb = _hybrid(flannel_backend="wireguard-native")
    server = render.k3s_config(tb, tb.node("vm1"))
    assert server["node-ip"] == "192.168.50.11" and server["node-external-ip"] == "203.0.113.11"
    assert server["flannel-external-ip"] is True and server["flannel-backend"] == "wireguard-native"
    assert server["server"] == "https://192.168.50.10:6443"  # VMs join over the project network
    pi = render.k3s_config(tb, tb.node("pi0"))
    assert pi["server"] == "https://203.0.113.10:6443"  # Pis through the first server's floating IP
    assert pi["node-ip"] == pi["node-external-ip"] == "198.51.100.20"
    assert "flannel-external-ip" not in pi and "flannel-backend" not in pi  # server-only flags
    with pytest.raises(
        ValueError,
        match=r"K3s nodes \['pi0', 'pi1'\] join VMs behind floating IPs.*"
        r"wireguard-native",
    ):
        _hybrid(flannel_backend="vxlan")


def test_vms_alone_keep_flannel_on_fixed_ips() -> None:
    tb = Testbed.model_validate(
        {
            "name": "t",
            "nodes": [{"name": f"vm{i}", **VM} for i in range(3)],
            "k3s": {"token": TOKEN},
            "vei": {"enabled": False},
            "openstack": OPENSTACK,
            "admin_cidrs": ["203.0.113.0/24"],
        }
    ).with_deploy_addresses(
        {f"vm{i}": f"203.0.113.1{i}" for i in range(3)}, {f"vm{i}": f"192.168.50.1{i}" for i in range(3)}
    )
    assert "flannel-external-ip" not in render.k3s_config(tb, tb.node("vm0"))


def test_keadm_join_and_init_arguments() -> None:
    tb = _testbed(kubeedge={"enabled": True})
    argv = render_kubeedge.keadm_join_argv(tb, tb.node("e0"))
    assert "--cloudcore-ipport=192.0.2.10:10000" in argv and "--edgenode-name=e0" in argv
    assert any(
        a.startswith("--labels=") and "edgerig.io/hardware-model=raspberry-pi-4-8gb" in a for a in argv
    )
    assert not any("node-role.kubernetes.io" in a for a in argv)  # restricted: set through the API instead
    # EdgeMesh answers DNS on the edge: edged's cluster DNS is its bridge address, the domain K3s's.
    assert (
        "modules.edged.tailoredKubeletConfig.clusterDNS={169.254.96.16},"
        "modules.edged.tailoredKubeletConfig.clusterDomain=cluster.local"
    ) in argv
    no_mesh = _testbed(
        kubeedge={"enabled": True, "edgemesh": {"enabled": False}}, platform={"openfaas": {"edge_weight": 0}}
    )
    assert not any("clusterDNS" in a for a in render_kubeedge.keadm_join_argv(no_mesh, no_mesh.node("e0")))
    init = render_kubeedge.keadm_init_argv(tb, pins=image_pins())
    assert "--advertise-address=192.0.2.10" in init and "--force" in init
    sets = [init[i + 1] for i, a in enumerate(init) if a == "--set"]
    assert "cloudCore.nodeSelector.kubernetes\\.io/hostname=m0" in sets  # CloudCore stays where edges dial
    assert "mosquitto.enable=false" in sets
    cloudcore = image_pins()["docker.io/kubeedge/cloudcore:v1.20.0"].digest
    assert f"cloudCore.image.tag=v1.20.0@sha256:{cloudcore}" in sets


def test_keadm_init_waits_for_the_rollout_and_marks_only_success() -> None:
    tb = _testbed(kubeedge={"enabled": True})
    script = render_kubeedge.keadm_init_script(tb, pins=image_pins())
    wait = script.index("rollout status deployment/cloudcore --timeout=600s")
    assert script.index("keadm init") < wait < script.index(f"touch {render_kubeedge.CLOUDCORE_READY}")
    assert "set -eu" in script  # a failed wait leaves no marker, so the next run tries again


def test_join_pulls_by_digest_and_sets_the_edge_status_period() -> None:
    tb = _testbed(kubeedge={"enabled": True})
    pins = image_pins()
    script = render_kubeedge.keadm_join_script(tb, tb.node("e0"), pins=pins)
    package = pins["docker.io/kubeedge/installation-package:v1.20.0"].digest
    image = f"docker.io/kubeedge/installation-package:v1.20.0@sha256:{package}"
    pull = f"images pull --hosts-dir /etc/containerd/certs.d {image}"
    assert pull in script and script.index(pull) < script.index("keadm join")
    assert (
        "sed -i 's/^\\( *nodeStatusUpdateFrequency:\\).*/\\1 4s/' /etc/kubeedge/config/edgecore.yaml"
        in script
    )
    assert script.index("systemctl restart edgecore") < script.index(f"touch {render_kubeedge.EDGE_JOINED}")
    assert "keadm reset edge --force" in script.split("keadm join")[0]  # a half-done join is cleaned first


def test_containerd_config_and_mirrors() -> None:
    tb = _testbed(
        kubeedge={"enabled": True}, artefacts={"registry_mirrors": {"docker.io": "http://c.lab:5000"}}
    )
    pins = image_pins()
    config = render_kubeedge.containerd_config(tb, pins)
    assert 'runtime_type = "io.containerd.runc.v2"' in config and "SystemdCgroup = true" in config
    assert (
        f'sandbox_image = "docker.io/kubeedge/pause:3.6@sha256:{pins["docker.io/kubeedge/pause:3.6"].digest}"'
        in config
    )
    (hosts,) = render_kubeedge.containerd_hosts_files(tb)
    assert hosts.path == "/etc/containerd/certs.d/docker.io/hosts.toml"
    assert (
        'server = "https://registry-1.docker.io"' in hosts.content
        and '[host."http://c.lab:5000"]' in hosts.content
    )


def test_cmdline_flags_appended_once() -> None:
    line = "console=tty1 root=PARTUUID=1 rootwait cgroup_enable=memory"
    once = merged_cmdline(line, list(CGROUP_FLAGS))
    assert once.count("\n") == 1 and once.split().count("cgroup_enable=memory") == 1
    assert merged_cmdline(once, list(CGROUP_FLAGS)) == once


def test_vm_without_address_is_named_when_needed() -> None:
    from infra.hosts.errors import HostStepError

    tb = _testbed()
    targets = targets_from_nodes(tb, addresses={"m0": "198.51.100.7"}, known_hosts=KNOWN_HOSTS)
    assert targets["m0"].address == "198.51.100.7"  # a deploy-time address wins over the model's
    data = tb.model_dump()
    data["nodes"][1]["address"] = None
    data["nodes"][1]["provider"] = "openstack"
    data["nodes"][1].update(flavor="m1.small", image="ubuntu-22.04", role="agent")
    data["openstack"] = {"external_network": "public", "public_key": "ssh-ed25519 AAAAC3 test"}
    data["admin_cidrs"] = ["203.0.113.0/24"]
    data["k3s"] = {**data["k3s"], "token": TOKEN, "flannel_backend": "wireguard-native"}
    vm_tb = Testbed.model_validate(data)
    targets = targets_from_nodes(vm_tb, known_hosts=KNOWN_HOSTS)
    with pytest.raises(HostStepError, match=r"host e0: step 'connect'.*no address known"):
        targets["e0"]


def test_cluster_up_unknown_stack_is_a_clear_error() -> None:
    from typer.testing import CliRunner

    from experiments.cli import app

    result = CliRunner().invoke(app, ["cluster", "up", "--stack", "no-such-stack"])
    assert result.exit_code == 1
    assert "Pulumi.no-such-stack.yaml does not exist" in result.output
    both = CliRunner().invoke(app, ["cluster", "up", "--stack", "a", "--inventory", "b"])
    assert both.exit_code != 0 and "exactly one of --stack NAME or --inventory FILE" in both.output


def _run_dir(mirror: Mirror, tmp_path: Path) -> tuple[Testbed, run_dir.RunDir]:
    tb = _testbed(mirror.url, kubeedge={"enabled": True})
    files = api.verified_files(tb, tb.nodes, mirror.pins, tmp_path / "cache")
    plans = api.plans_for(
        tb,
        tb.nodes,
        files,
        addresses={},
        extra_tls_san=None,
        kubeedge_token=TOKEN,
        boot_delay=3,
        pins=mirror.pins,
    )
    return tb, run_dir.write(tmp_path / "run", tb, plans, targets_from_nodes(tb, known_hosts=KNOWN_HOSTS))


def test_run_dir_inventories_carry_the_same_hosts_and_inputs(mirror: Mirror, tmp_path: Path) -> None:
    _, written = _run_dir(mirror, tmp_path)
    groups = written.groups()
    assert groups["k3s_first_server"] == ["m0"] and groups["k3s_servers"] == ["m0", "m1", "m2"]
    assert groups["k3s_agents"] == ["a0"] and groups["kubeedge_cloud"] == ["m0"]
    assert groups["kubeedge_edge"] == groups["raspberrypi"] == groups["via_pyinfra"] == ["e0"]
    hosts = written.host_vars()
    assert hosts["e0"]["raspberrypi_boot_delay"] == 3 and "containerd" in hosts["e0"]["common_packages"]
    token_files = [f for f in hosts["e0"]["kubeedge_edge_files"] if f["secret"]]
    assert [f["dest"] for f in token_files] == [render.KUBEEDGE_TOKEN_FILE]
    assert Path(token_files[0]["src"]).stat().st_mode & 0o077 == 0
    assert TOKEN not in written.ansible_inventory.read_text() + written.pyinfra_inventory.read_text()
    # pyinfra's own CLI reads inventory.py (a subprocess: pyinfra's CLI patches threads with gevent):
    # same hosts, same inputs, same groups, pyinfra's connection keys.
    shown = subprocess.run(
        [str(BIN / "pyinfra"), str(written.pyinfra_inventory), "debug-inventory"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stderr  # pyinfra prints its report there
    e0 = shown[shown.index("[e0]") :]
    groups_line = e0.splitlines()[1]
    assert all(g in groups_line for g in ("kubeedge_edge", "raspberrypi", "common", "via_pyinfra"))
    assert '"ssh_hostname": "192.0.2.20"' in e0 and "ansible_host" not in e0
    assert f'"dest": "{render.KUBEEDGE_TOKEN_FILE}"' in e0


def _ansible_defaults(role: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROLES_DIR / role / "defaults/main.yml").read_text())
    return data


PYINFRA_DEFAULTS = {
    "common": common.DEFAULTS,
    "host_firewall": host_firewall.DEFAULTS,
    "raspberrypi": raspberrypi.DEFAULTS,
    "airgap_images": airgap_images.DEFAULTS,
    "k3s": k3s.DEFAULTS,
    "kubeedge_cloud": kubeedge.CLOUD_DEFAULTS,
    "kubeedge_edge": kubeedge.EDGE_DEFAULTS,
}


@pytest.mark.parametrize("role", list(ROLE_INPUTS))
def test_every_input_is_declared_with_the_same_default_in_both_tools(role: str) -> None:
    expected = {f"{role}_{name}" for name in ROLE_INPUTS[role]}
    ansible, pyinfra = _ansible_defaults(role), PYINFRA_DEFAULTS[role]
    assert set(ansible) == set(pyinfra) == expected
    for key, value in ansible.items():
        if key != "common_hostname":  # Ansible's default is the Jinja inventory name, pyinfra's None
            assert pyinfra[key] == value, key


def test_plan_gives_each_role_only_its_inputs(mirror: Mirror, tmp_path: Path) -> None:
    _, written = _run_dir(mirror, tmp_path)
    for name, data in written.host_vars().items():
        roles = [r for r in ROLE_INPUTS if any(k.startswith(f"{r}_") for k in data)]
        own = {f"{r}_{i}" for r in roles for i in ROLE_INPUTS[r]}
        inputs = {k for k in data if not k.startswith("ansible_")}
        assert inputs == own, name


def test_mirror_download_verified_and_cached(mirror: Mirror, tmp_path: Path) -> None:
    tb = _testbed(mirror.url)
    item = k3s_binary(tb.k3s.version, "amd64")
    got = fetch(tb, item, pins=mirror.pins, cache_dir=tmp_path)
    assert got.sha256 == mirror.pins[K3S_KEY].digest and got.path.read_bytes() == mirror.files[K3S_KEY]
    mirror.server.shutdown()  # a cached, verified file needs no second download
    try:
        assert fetch(tb, item, pins=mirror.pins, cache_dir=tmp_path).path == got.path
    finally:
        mirror.restart()


def test_install_plan_splits_by_concern(mirror: Mirror, tmp_path: Path) -> None:
    tb = _testbed(mirror.url, kubeedge={"enabled": True})
    files = api.verified_files(tb, [tb.node("m0")], mirror.pins, tmp_path)
    plan = install_plan(tb, tb.node("m0"), files["m0"], pins=mirror.pins)
    assert list(plan.concerns) == ["common", "host_firewall", "k3s", "kubeedge_cloud"]  # static: firewalled
    assert plan.concerns["k3s"].service == "k3s" and plan.tool == "ansible"
    assert [c.creates for c in plan.concerns["kubeedge_cloud"].commands] == [render_kubeedge.CLOUDCORE_READY]
    assert [c.removes for c in plan.concerns["k3s"].reset_commands] == ["/usr/local/bin/k3s-uninstall.sh"]


def test_node_objects_script_labels_taints_and_deletes_with_the_operators_kubectl(tmp_path: Path) -> None:
    """node-objects.sh runs the API steps of `edgerig cluster up|reset` with any kubectl (a recording
    stand-in here: there is no Kubernetes on this machine)."""
    calls = tmp_path / "calls"
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    kubectl.chmod(0o755)
    for testbed in (_testbed(kubeedge={"enabled": True}), _hybrid(flannel_backend="wireguard-native")):
        script = tmp_path / node_objects.SCRIPT
        script.write_text(node_objects.script(testbed, testbed.nodes))
        calls.write_text("")
        env = {"PATH": "/usr/bin:/bin", "KUBECTL": str(kubectl)}
        subprocess.run(["sh", str(script), "install"], check=True, env=env)
        installed = calls.read_text().splitlines()
        subprocess.run(["sh", str(script), "reset"], check=True, env=env)
        deleted = calls.read_text().splitlines()[len(installed):]
        if testbed.name == "t":  # the EdgeCore node: waited for, labelled, tainted (keadm has no taint flag)
            assert installed == [
                "get node e0",
                "label node e0 node-role.kubernetes.io/edge= --overwrite",
                "taint node e0 node-role.kubernetes.io/edge:NoSchedule --overwrite",
            ]
        else:  # K3s agents at the edge: the label NodeRestriction keeps from their kubelets, and the taint
            # is in their config.yaml already
            assert installed == [
                f"label node pi{i} node-role.kubernetes.io/edge= --overwrite" for i in range(2)
            ]
        assert deleted == [
            f"{verb} --ignore-not-found"
            for n in testbed.nodes
            for verb in (f"delete node {n.name}", f"-n kube-system delete secret {n.name}.node-password.k3s")
        ]
    bad = subprocess.run(["sh", str(script)], capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr


def test_image_archives_are_a_concern_of_their_own_in_both_inventories(tmp_path: Path) -> None:
    """edgerig's image archives (infra/images.py) reach the airgap_images role and deploy with the
    same inputs, before K3s starts; a host without archives is not in the group."""
    from infra import images

    tb = _testbed(kubeedge={"enabled": True})
    archive = tmp_path / "vei-arm64.tar"
    archive.write_bytes(b"archive")
    plans = [
        HostPlan(
            node=n,
            tool=tool_for(n),
            images=[images.NodeArchive(archive, "ab" * 32, f"{images.EDGE_IMAGES_DIR}/vei-arm64.tar")]
            if n.name == "e0"
            else [],
            image_import=images.import_command(n),
        )
        for n in tb.nodes
    ]
    written = run_dir.write(tmp_path / "run", tb, plans, targets_from_nodes(tb, known_hosts=KNOWN_HOSTS))
    assert written.groups()["airgap_images"] == ["e0"]
    edge = written.host_vars()["e0"]
    assert edge["airgap_images_archives"] == [
        {"src": str(archive), "dest": "/var/lib/edgerig/images/vei-arm64.tar", "sha256": "ab" * 32}
    ]
    assert edge["airgap_images_import"] == ["ctr", "--namespace", "k8s.io", "images", "import"]
    assert edge["airgap_images_containerd_socket"] == "/run/containerd/containerd.sock"
    assert not any(k.startswith("airgap_images_") for k in written.host_vars()["m0"])
    play_hosts = [play["hosts"] for play in yaml.safe_load((ROLES_DIR.parent / "install.yml").read_text())]
    assert play_hosts.index("airgap_images") < play_hosts.index("k3s_first_server")
    pyinfra_inventory = runpy.run_path(str(written.pyinfra_inventory))  # a module of literals
    assert pyinfra_inventory["airgap_images"] == ["e0"]
    assert dict(pyinfra_inventory["hosts"])["e0"]["airgap_images_archives"] == edge["airgap_images_archives"]
