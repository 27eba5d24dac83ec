"""Testbeds from the real stack files, plus variants that switch features on and off."""

from __future__ import annotations

from typing import Any

import yaml
from testkit import ROOT, TOKEN

from infra.model import Testbed, load_testbed
from infra.stackfile import load_stack_file

STACK_FILES = sorted((ROOT / "stacks").glob("Pulumi.*.yaml"))
STACK_NAMES = [p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in STACK_FILES]
AWS_SECRET = "aws-secret-for-tests-only-0002"
MQTT_PASSWORD = "mqtt-password-for-tests-only-0003"


def stack(name: str) -> Testbed:
    return load_stack_file(
        ROOT / "stacks" / f"Pulumi.{name}.yaml", secrets={"k3sToken": TOKEN}, env={}
    )


def stack_config(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{name}.yaml").read_text())
    return dict(doc["config"])


def variant(name: str, **overrides: Any) -> Testbed:
    """The stack with `edgerig:<key>` values replaced (top-level keys only)."""
    config = stack_config(name)
    config["edgerig:k3sToken"] = TOKEN
    for key, value in overrides.items():
        config[f"edgerig:{key}"] = value
    return load_testbed(config, name=name)


def with_cloud_sinks(name: str) -> Testbed:
    config = stack_config(name)
    vei = dict(config.get("edgerig:vei") or {})
    vei["clouds"] = [
        {"name": "local", "kind": "local"},
        {
            "name": "hivemq",
            "kind": "mqtt",
            "mqttUrl": "mqtt://broker.example:1883/vei/results",
            "mqttUsername": "vei",
        },
        {"name": "aws", "kind": "aws", "awsRegion": "eu-central-1"},
    ]
    config.update(
        {
            "edgerig:vei": vei,
            "edgerig:k3sToken": TOKEN,
            "edgerig:awsAccessKeyId": "AKIAEXAMPLEFORTESTS",
            "edgerig:awsSecretAccessKey": AWS_SECRET,
            "edgerig:mqttPassword": MQTT_PASSWORD,
        }
    )
    return load_testbed(config, name=name)
