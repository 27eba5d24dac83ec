"""The OpenFaaS gateway's REST API (the calls faas-cli makes), with the stack's admin credentials.

    GET    /system/info                 provider and gateway versions
    GET    /system/function/<name>      a function's status (404: not deployed)
    POST   /system/functions            deploy (service, image, labels, requests, ...)
    DELETE /system/functions            {"functionName": name}

The password comes from the stack's secret output and goes only into the Authorization header.
"""

from __future__ import annotations

from typing import Any

import requests

from experiments.testbeds.base import TestbedError

USER = "admin"


class OpenFaaSError(TestbedError):
    """The gateway refused a call; the message has its status and answer."""


class OpenFaaSClient:
    def __init__(self, base_url: str, password: str, user: str = USER, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.auth = (user, password)
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            resp = self.session.request(method, f"{self.base_url}{path}", timeout=self.timeout_s, **kwargs)
        except requests.RequestException as err:
            raise OpenFaaSError(f"the OpenFaaS gateway at {self.base_url} did not answer {method} {path}: "
                                f"{err}") from None
        if resp.status_code == 401:
            raise OpenFaaSError(f"the OpenFaaS gateway at {self.base_url} refused the admin credentials "
                                "(401): is the stack's openfaasAdminPassword output current?")
        return resp

    def _ok(self, resp: requests.Response, what: str) -> None:
        if not 200 <= resp.status_code < 300:
            raise OpenFaaSError(f"OpenFaaS refused to {what} ({resp.status_code}): {resp.text.strip()[:300]}")

    def info(self) -> dict[str, Any]:
        resp = self._call("GET", "/system/info")
        self._ok(resp, "report its versions")
        data = resp.json()
        return data if isinstance(data, dict) else {}

    def function(self, name: str) -> dict[str, Any] | None:
        resp = self._call("GET", f"/system/function/{name}")
        if resp.status_code == 404:
            return None
        self._ok(resp, f"describe function {name}")
        data = resp.json()
        return data if isinstance(data, dict) else None

    def deploy(self, spec: dict[str, Any]) -> None:
        self._ok(self._call("POST", "/system/functions", json=spec), f"deploy function {spec.get('service')}")

    def delete(self, name: str) -> None:
        resp = self._call("DELETE", "/system/functions", json={"functionName": name})
        if resp.status_code != 404:
            self._ok(resp, f"remove function {name}")

    def close(self) -> None:
        self.session.close()


def provider_release(info: dict[str, Any]) -> str:
    """faas-netes's release from /system/info (e.g. 0.18.12), or '' when the gateway does not say."""
    provider = info.get("provider") or {}
    version = provider.get("version") or {} if isinstance(provider, dict) else {}
    return str(version.get("release") or "") if isinstance(version, dict) else ""
