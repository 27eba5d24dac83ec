"""How host configuration trusts hosts and hands out credentials, checked on the rendered output:
SSH (host keys, `--`, sudo), the K3s join tokens, secrets encryption, the validated SSH user."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hosts_support import TOKEN

from infra.hosts import api, render
from infra.hosts.errors import HostStepError
from infra.hosts.inventory import (
    SshTarget,
    ansible_connection_vars,
    pyinfra_connection_data,
    targets_from_nodes,
)
from infra.hosts.ssh import ssh_argv
from infra.model import Testbed

SECURE = render.JoinTokens(
    server="K10" + "ab" * 32 + "::server:test-only-server-secret",
    agent="K10" + "ab" * 32 + "::node:test-only-agent-secret",
)


def _testbed(**extra: Any) -> Testbed:
    nodes = [
        {"name": "m0", "realm": "cloud", "role": "server", "provider": "static", "address": "192.0.2.10"},
        {"name": "m1", "realm": "cloud", "role": "server", "provider": "static", "address": "192.0.2.11"},
        {"name": "m2", "realm": "cloud", "role": "server", "provider": "static", "address": "192.0.2.12"},
        {"name": "a0", "realm": "edge", "role": "agent", "provider": "static", "address": "192.0.2.20",
         "ssh_user": "pi"},
    ]
    return Testbed.model_validate(
        {"name": "t", "nodes": nodes, "k3s": {"token": TOKEN}, "vei": {"enabled": False}, **extra}
    )


def _files(tb: Testbed, name: str, tokens: render.JoinTokens | None) -> dict[str, render.RenderedFile]:
    return {f.path: f for f in render.k3s_files(tb, tb.node(name), join_tokens=tokens)}


def _config(files: dict[str, render.RenderedFile]) -> dict[str, Any]:
    return yaml.safe_load(files[render.K3S_CONFIG].content)


def test_later_joins_use_the_secure_tokens_the_first_server_wrote() -> None:
    tb = _testbed()
    first = _files(tb, "m0", SECURE)
    assert first[render.K3S_TOKEN_FILE].content.strip() == TOKEN  # cluster-init: the configured secret
    assert _files(tb, "m1", SECURE)[render.K3S_TOKEN_FILE].content.strip() == SECURE.server
    agent = _files(tb, "a0", SECURE)
    assert agent[render.K3S_TOKEN_FILE].content.strip() == SECURE.agent
    # Without a running first server (test fleet) later servers keep the configured secret, and
    # agents never see the server token: theirs is the derived agent secret.
    assert _files(tb, "m2", None)[render.K3S_TOKEN_FILE].content.strip() == TOKEN
    plain_agent = _files(tb, "a0", None)[render.K3S_TOKEN_FILE].content.strip()
    assert plain_agent == render.agent_secret(tb) and TOKEN not in plain_agent


def test_servers_accept_agents_only_with_the_agent_token() -> None:
    tb = _testbed()
    for name in ("m0", "m1", "m2"):
        files = _files(tb, name, SECURE)
        assert _config(files)["agent-token-file"] == render.K3S_AGENT_TOKEN_FILE
        secret = files[render.K3S_AGENT_TOKEN_FILE]
        assert secret.content.strip() == render.agent_secret(tb) and secret.mode == "0600" and secret.secret
    agent = _files(tb, "a0", SECURE)
    assert render.K3S_AGENT_TOKEN_FILE not in agent and "agent-token-file" not in _config(agent)
    # Secrets come first, so no service file that names them exists before them.
    assert all(f.secret for f in render.k3s_files(tb, tb.node("m1"), join_tokens=SECURE)[:2])
    other = Testbed.model_validate({**tb.model_dump(), "k3s": {"token": "another-" + TOKEN}})
    assert render.agent_secret(other) != render.agent_secret(tb)


def test_secrets_encryption_at_rest_on_every_server() -> None:
    tb = _testbed()
    for name in ("m0", "m1"):
        assert _config(_files(tb, name, None))["secrets-encryption"] is True
    assert "secrets-encryption" not in _config(_files(tb, "a0", None))  # a server-only option
    off = _testbed(k3s={"token": TOKEN, "secrets_encryption": False})
    assert "secrets-encryption" not in _config(_files(off, "m0", None))


def test_join_tokens_are_read_as_root_and_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    target = SshTarget("m0", "192.0.2.10", 22, "pi", "/k", "/kh")
    seen: list[tuple[str, bool]] = []

    class Done:
        def __init__(self, out: str, rc: int = 0) -> None:
            self.stdout, self.stderr, self.returncode = out, "cat: permission denied", rc

    def fake_ssh(t: SshTarget, command: str, *, root: bool = False) -> Done:
        seen.append((command, root))
        return Done(SECURE.server if command.endswith("/token") else SECURE.agent)

    monkeypatch.setattr(api, "_ssh", fake_ssh)
    assert api.read_join_tokens(target) == SECURE
    assert seen == [(f"cat {render.K3S_SERVER_TOKEN}", True), (f"cat {render.K3S_AGENT_TOKEN}", True)]
    monkeypatch.setattr(api, "_ssh", lambda t, c, root=False: Done("short-" + TOKEN))
    with pytest.raises(HostStepError, match="not a secure token") as err:
        api.read_join_tokens(target)
    assert TOKEN not in str(err.value)


def test_ssh_escalates_with_sudo_n_and_ends_options_before_the_destination() -> None:
    pi = SshTarget("a0", "192.0.2.20", 22, "pi", "/k", "/kh")
    argv = ssh_argv(pi, "cat /etc/rancher/k3s/k3s.yaml")
    assert argv[-3:] == ["--", "pi@192.0.2.20", "cat /etc/rancher/k3s/k3s.yaml"]
    assert "-oStrictHostKeyChecking=yes" in argv and "-oUserKnownHostsFile=/kh" in argv
    from infra.hosts.ssh import as_root

    assert as_root(pi, "k3s kubectl get nodes") == "sudo -n sh -c 'k3s kubectl get nodes'"
    root = SshTarget("a0", "192.0.2.20", 22, "root", "/k", "/kh")
    assert as_root(root, "id -u") == "id -u"
    assert pyinfra_connection_data(pi)["_sudo"] is True and pyinfra_connection_data(root)["_sudo"] is False
    assert ansible_connection_vars(pi)["ansible_become_method"] == "sudo"


@pytest.mark.parametrize("user", ["-oProxyCommand=x", "root@evil", "Pi", "a b", "", "x" * 33, "1pi"])
def test_ssh_user_must_be_a_posix_user_name(user: str) -> None:
    with pytest.raises(ValueError, match="is not a POSIX user name"):
        _testbed(nodes=[{"name": "m0", "realm": "cloud", "role": "server", "provider": "static",
                         "address": "192.0.2.10", "ssh_user": user}])


def test_no_known_hosts_refuses_to_connect_unless_the_lab_override_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("EDGERIG_SSH_KNOWN_HOSTS", raising=False)
    tb = _testbed()
    refusal = r"no known_hosts file.*edgerig:ssh.knownHosts.*acceptNewHostKeys"
    with pytest.raises(HostStepError, match=refusal):
        targets_from_nodes(tb)
    from_stack = targets_from_nodes(_testbed(ssh={"known_hosts": "~/lab_known_hosts"}))
    assert str(from_stack["m0"].known_hosts).endswith("/lab_known_hosts")
    monkeypatch.setenv("EDGERIG_SSH_KNOWN_HOSTS", "/env/known_hosts")
    assert targets_from_nodes(tb)["a0"].known_hosts == "/env/known_hosts"
    monkeypatch.delenv("EDGERIG_SSH_KNOWN_HOSTS")
    lab = targets_from_nodes(_testbed(ssh={"accept_new_host_keys": True}))
    assert lab["m0"].known_hosts is None
    assert "-oStrictHostKeyChecking=accept-new" in ssh_argv(lab["m0"], "true")
    assert pyinfra_connection_data(lab["m0"])["ssh_strict_host_key_checking"] == "accept-new"
    checked = targets_from_nodes(tb, known_hosts="/kh")["m0"]
    assert "accept-new" not in " ".join(ssh_argv(checked, "true"))
    assert "accept-new" not in ansible_connection_vars(checked)["ansible_ssh_common_args"]
    assert pyinfra_connection_data(checked)["ssh_strict_host_key_checking"] == "yes"


def test_kubeconfig_is_written_owner_only_and_outside_the_checkout(tmp_path: Path) -> None:
    from infra.hosts.commands import REPO, default_kubeconfig, write_private

    fresh = tmp_path / "kube" / "edgerig"
    write_private(fresh, "apiVersion: v1\n")
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600 and fresh.read_text() == "apiVersion: v1\n"
    assert stat.S_IMODE(fresh.parent.stat().st_mode) == 0o700
    loose = tmp_path / "loose"
    loose.write_text("old, longer content\n")
    loose.chmod(0o644)
    write_private(loose, "new\n")
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600 and loose.read_text() == "new\n"
    default = default_kubeconfig(_testbed())
    assert default.name == "edgerig-t" and REPO not in default.parents
    ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", "kubeconfig"], check=False)
    assert ignored.returncode == 0  # a kubeconfig saved in the checkout is never committed


def test_readme_saves_the_admin_kubeconfig_privately_outside_the_checkout() -> None:
    import re

    from infra.hosts.commands import REPO

    readme = (REPO / "README.md").read_text()
    saves = re.findall(r"^.*kubeconfig --show-secrets\s*>.*$", readme, re.MULTILINE)
    assert saves, "the README shows how to save the kubeconfig"
    for line in saves:
        assert "umask 077" in line and re.search(r">\s*~/\.kube/", line), line
    assert "KUBECONFIG=./" not in readme
