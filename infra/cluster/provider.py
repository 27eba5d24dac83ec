"""Dynamic provider: one resource per host. create = install, update = re-install (idempotent),
delete = reset (uninstall + delete the Node object), so a stack can be destroyed and rebuilt.

Runs inside Pulumi's dynamic-provider host process, so it imports infra.hosts lazily and gets the
testbed as a JSON dump (secrets masked) plus the secrets as a separate, secret input.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pulumi import dynamic

from infra.hosts.inventory import HOST_KEYS_FIX
from infra.model import Testbed

# A change in any of these means "a different host": reset the old one, install the new one.
REPLACE_KEYS = ("node", "role", "provider", "address")
# A change in any of these means "same host, new config": run the install again.
UPDATE_KEYS = ("config_hash", "secrets", "extra_tls_san")


def restore_testbed(props: dict[str, Any]) -> Testbed:
    secrets = json.loads(props["secrets"])
    base = Testbed.restore(props["testbed"], secrets)
    return base.with_deploy_addresses(props.get("addresses") or {}, props.get("internal_addresses") or {})


@contextlib.contextmanager
def known_hosts_file(testbed: Testbed, props: dict[str, Any]) -> Iterator[str | None]:
    """A private known_hosts file for this run: the VMs' keys the program generated, then the
    operator's file for the static hosts (edgerig:ssh.knownHosts). None when there is neither (the
    lab override, or the refusal, is then decided by host configuration)."""
    own = testbed.ssh.known_hosts
    text = str(props.get("known_hosts") or "")
    if own:
        path = Path(own).expanduser()
        if not path.is_file():
            raise RuntimeError(f"edgerig:ssh.knownHosts {own!r} does not exist: {HOST_KEYS_FIX}")
        text += path.read_text()
    if not text:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="edgerig-known-hosts-") as tmp:
        file = Path(tmp) / "known_hosts"
        file.write_text(text)
        yield str(file)


def _install(props: dict[str, Any]) -> dict[str, Any]:
    from infra.hosts import api  # owned by host configuration; imported only when a host is touched

    testbed = restore_testbed(props)
    with known_hosts_file(testbed, props) as known:
        result = api.install(
            testbed,
            nodes=[props["node"]],
            addresses=props.get("addresses") or {},
            extra_tls_san=props.get("extra_tls_san") or [],
            known_hosts=known,
        )
    kubeconfig = result.kubeconfig or ""
    if props.get("wants_kubeconfig") and not kubeconfig:
        raise RuntimeError(
            f"{props['node']}: K3s is installed but no kubeconfig could be fetched: "
            f"{getattr(result, 'reason', '') or 'unknown reason'}"
        )
    return {**props, "kubeconfig": kubeconfig}


class HostInstallProvider(dynamic.ResourceProvider):
    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        outs = _install(props)
        return dynamic.CreateResult(id_=f"{props['testbed']['name']}/{props['node']}", outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        replaces = [k for k in REPLACE_KEYS if olds.get(k) != news.get(k)]
        changed = replaces + [k for k in UPDATE_KEYS if olds.get(k) != news.get(k)]
        return dynamic.DiffResult(
            changes=bool(changed), replaces=replaces, delete_before_replace=bool(replaces)
        )

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        return dynamic.UpdateResult(outs=_install(news))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        from infra.hosts import api

        testbed = restore_testbed(props)
        with known_hosts_file(testbed, props) as known:
            api.reset(testbed, [props["node"]], addresses=props.get("addresses") or {}, known_hosts=known)
