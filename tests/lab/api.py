"""HTTPS client for the lab's control server, reached from the Ansible controller.

The machine running the lab does not resolve fleet.test (its resolver is left alone), so the
client connects to control-1's address and sends the control server's name as TLS server name
and Host header; the certificate is checked against the lab CA.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx

from tests.lab import topology


class ControlServerClient:
    """Admin client for the control server's REST API."""

    def __init__(self, ca_file: Path, admin_token: str, timeout: float = 15.0):
        context = ssl.create_default_context(cafile=str(ca_file))
        self._client = httpx.Client(
            base_url=f"https://{topology.CONTROL.address}:{topology.CONTROL_SERVER_PORT}",
            headers={"Host": f"{topology.CONTROL_SERVER_NAME}:{topology.CONTROL_SERVER_PORT}",
                     "Authorization": f"Bearer {admin_token}"},
            verify=context, timeout=timeout)

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        extensions = {"sni_hostname": topology.CONTROL_SERVER_NAME}
        return self._client.request(method, path, extensions=extensions, **kwargs)

    def get_json(self, path: str, **kwargs):
        response = self.request("GET", path, **kwargs)
        response.raise_for_status()
        return response.json()

    def create_enrollment_token(self, description: str) -> str:
        response = self.request("POST", "/v1/enrollment-tokens",
                                json={"description": description, "expires_in_s": 86400})
        response.raise_for_status()
        return response.json()["token"]

    def printers(self) -> list[dict]:
        printers, after = [], None
        while True:
            params = {"limit": 1000, **({"after": after} if after else {})}
            page = self.get_json("/v1/printers", params=params)
            printers.extend(page["printers"])
            after = page.get("next_after")
            if not after:
                return printers

    def printer_access(self, printer_id: str) -> dict:
        """Return the printer with its public URL, share credentials and Moonraker API key."""
        return self.get_json(f"/v1/printers/{printer_id}/access")

    def frontends(self) -> list[dict]:
        return self.get_json("/v1/frontends")["frontends"]

    def close(self) -> None:
        self._client.close()
