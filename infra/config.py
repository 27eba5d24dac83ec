"""The only place the Pulumi program reads pulumi.Config: once, into the typed Testbed model."""

from __future__ import annotations

from typing import Any

import pulumi

from infra.model import SECRET_KEYS, Testbed, load_testbed

# Map-valued and list-valued keys are read with get_object; scalars with get/get_bool.
OBJECT_KEYS = ("nodes", "k3s", "kubeedge", "openstack", "artefacts", "platform", "vei", "adminCidrs", "ssh")
BOOL_KEYS = ("edgeTaint",)
DECLARED_KEYS = frozenset((*OBJECT_KEYS, *BOOL_KEYS, *SECRET_KEYS))


def read_config(config: pulumi.Config) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key in OBJECT_KEYS:
        value = config.get_object(key)
        if value is not None:
            values[key] = value
    for key in BOOL_KEYS:
        flag = config.get_bool(key)
        if flag is not None:
            values[key] = flag
    for key in SECRET_KEYS:
        # The plain value goes into a SecretStr in the model; resources receive it only as
        # pulumi.Output.secret(...), so it never reaches state or logs in plain text.
        secret = config.get(key)
        if secret is not None:
            values[key] = secret
    return values


def read_testbed() -> Testbed:
    """Parse the current stack's config; a bad stack file fails here, before any resource exists."""
    return load_testbed(read_config(pulumi.Config("edgerig")), name=pulumi.get_stack())
