"""Helpers for the end-to-end checks: printer access through public URLs, waiting on the fleet."""

from __future__ import annotations

import json
import time

import httpx

from tests.lab import topology


def printer_access(lab, printer_id: str) -> dict:
    """Return the control server's access record of a printer (public URL, share auth, API key)."""
    client = lab.control_server()
    try:
        return client.printer_access(printer_id)
    finally:
        client.close()


def printers(lab) -> list[dict]:
    client = lab.control_server()
    try:
        return client.printers()
    finally:
        client.close()


def basic_auth(access: dict) -> tuple[str, str] | None:
    auth = access.get("share_auth") or {}
    return (auth["username"], auth["password"]) if auth.get("mode") == "basic" else None


def get_with_credentials(lab, access: dict, path: str) -> tuple[int, str]:
    """GET `path` on the printer's public URL from client-1 with the share auth and the API key."""
    return lab.client_get(access["public_url"].rstrip("/") + path,
                          headers={"X-Api-Key": access["moonraker_api_key"]},
                          basic_auth=basic_auth(access))


def answers_as(lab, access: dict, printer_id: str) -> bool:
    """Whether the printer's public URL serves Moonraker with Klippy ready, from that printer."""
    status, body = get_with_credentials(lab, access, "/machine/system_info")
    if status != 200:
        return False
    return topology.host_by_name(printer_id).address in addresses(json.loads(body))


def addresses(system_info: dict) -> set[str]:
    """Return the IP addresses that Moonraker's /machine/system_info lists for its host."""
    network = system_info["result"]["system_info"].get("network", {})
    return {entry["address"] for interface in network.values() for entry in interface.get("ip_addresses", [])}


def wait_until(condition, timeout: float, interval: float = 2.0):
    """Call `condition` until it returns a true value or `timeout` seconds pass; return its last value.

    A connection error from the control server counts as a false value, because the checks restart
    it on purpose and it refuses connections for a few seconds while it starts.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except httpx.TransportError:
            value = None
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def wait_for_control_server(lab, timeout: float = 120.0) -> list[dict]:
    """Wait until the control server responds again; return its printers."""
    listing = wait_until(lambda: printers(lab), timeout)
    assert listing, f"the control server did not answer within {timeout:.0f} s"
    return listing
