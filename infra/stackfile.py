"""Reading stack files without the Pulumi engine, and turning validation errors into clear messages."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from infra.model import SECRET_KEYS, Testbed, load_testbed
from infra.model_base import StackConfigError

__all__ = ["SECRET_ENV", "StackConfigError", "load_stack_file"]

# Environment variables that can supply secrets when a stack file is read outside Pulumi,
# e.g. `EDGERIG_K3S_TOKEN=$(pulumi config get edgerig:k3sToken) edgerig cluster up --stack pi-k3s`.
SECRET_ENV = {
    "k3sToken": "EDGERIG_K3S_TOKEN",
    "awsAccessKeyId": "EDGERIG_AWS_ACCESS_KEY_ID",
    "awsSecretAccessKey": "EDGERIG_AWS_SECRET_ACCESS_KEY",
    "mqttPassword": "EDGERIG_MQTT_PASSWORD",
}


def _secret_value(key: str, raw: Any, secrets: Mapping[str, str], env: Mapping[str, str]) -> str | None:
    if key in secrets:
        return secrets[key]
    if SECRET_ENV[key] in env:
        return env[SECRET_ENV[key]]
    if raw is None or (isinstance(raw, dict) and "secure" in raw):
        return None  # encrypted in the file: only the Pulumi engine can decrypt it
    raise StackConfigError(
        f"edgerig:{key} is stored in plain text in the stack file: remove it and run "
        f"`pulumi config set --secret edgerig:{key} ...` so it is encrypted"
    )


def load_stack_file(
    path: str | Path, *, secrets: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None
) -> Testbed:
    """Parse stacks/Pulumi.<name>.yaml without the Pulumi engine (CLI, hosts, tests)."""
    path = Path(path)
    if not path.is_file():
        raise StackConfigError(f"stack file {path} does not exist: create it or pick one from stacks/")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise StackConfigError(f"{path} is not valid YAML: {exc}") from None
    config = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(config, dict):
        raise StackConfigError(f"{path} has no `config:` map; see stacks/Pulumi.pi-k3s.yaml for the layout")
    name = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    secrets = secrets or {}
    env = os.environ if env is None else env
    plain: dict[str, Any] = {}
    for key, value in config.items():
        short = key.removeprefix("edgerig:")
        if short in SECRET_KEYS:
            resolved = _secret_value(short, value, secrets, env)
            if resolved is not None:
                plain[short] = resolved
        else:
            plain[key] = value
    for key in SECRET_KEYS:
        if key not in plain and (key in secrets or SECRET_ENV[key] in env):
            plain[key] = secrets.get(key, env.get(SECRET_ENV[key]))
    try:
        return load_testbed(plain, name=name)
    except StackConfigError as exc:
        hint = ""
        if "k3sToken is missing" in str(exc):
            hint = f" (outside Pulumi, export {SECRET_ENV['k3sToken']})"
        raise StackConfigError(f"{path}: {exc}{hint}") from None
