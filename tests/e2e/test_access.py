"""Every printer answers at its public URL, from a client host, only with its credentials."""

import json

import pytest

from tests.e2e import fleet
from tests.lab import topology

pytestmark = pytest.mark.lab

PRINTER_IDS = [p.name for p in topology.PRINTERS]


@pytest.fixture(scope="module")
def accesses(lab):
    return {printer_id: fleet.printer_access(lab, printer_id) for printer_id in PRINTER_IDS}


@pytest.mark.parametrize("printer_id", PRINTER_IDS)
def test_public_url_serves_server_info(lab, accesses, printer_id):
    access = accesses[printer_id]
    assert access["public_url"], f"{printer_id} has no public URL"

    status, body = fleet.get_with_credentials(lab, access, "/server/info")

    assert status == 200, body[:300]
    info = json.loads(body)["result"]
    assert info["moonraker_version"] == "0.11.0"
    assert info["klippy_state"] == "ready"


@pytest.mark.parametrize("printer_id", PRINTER_IDS)
def test_public_url_reaches_that_printer(lab, accesses, printer_id):
    status, body = fleet.get_with_credentials(lab, accesses[printer_id], "/machine/system_info")

    assert status == 200, body[:300]
    assert topology.host_by_name(printer_id).address in fleet.addresses(json.loads(body))


@pytest.mark.parametrize("printer_id", PRINTER_IDS)
def test_public_url_rejects_missing_credentials(lab, accesses, printer_id):
    status, _ = lab.client_get(accesses[printer_id]["public_url"].rstrip("/") + "/server/info")

    assert status in (401, 403)


@pytest.mark.parametrize("printer_id", PRINTER_IDS)
def test_public_url_rejects_missing_api_key(lab, accesses, printer_id):
    access = accesses[printer_id]

    status, _ = lab.client_get(access["public_url"].rstrip("/") + "/access/api_key",
                               basic_auth=fleet.basic_auth(access))

    assert status in (401, 403)


@pytest.mark.parametrize("printer_id", PRINTER_IDS)
def test_spoofed_real_ip_is_not_trusted(lab, accesses, printer_id):
    # Moonraker trusts 127.0.0.0/8 on every lab printer and takes the client address from
    # X-Real-Ip / X-Forwarded-For, so a frontend that passed these headers on would let this in.
    access = accesses[printer_id]
    spoofed = {"X-Real-Ip": "127.0.0.1", "X-Forwarded-For": "127.0.0.1"}

    status, _ = lab.client_get(access["public_url"].rstrip("/") + "/access/api_key",
                               headers=spoofed, basic_auth=fleet.basic_auth(access))

    assert status in (401, 403)


def test_printer_api_key_is_not_public(lab, accesses):
    # /access/info answers without authentication; it must not call a public client trusted.
    access = accesses[PRINTER_IDS[0]]

    status, body = lab.client_get(access["public_url"].rstrip("/") + "/access/info",
                                  headers={"X-Real-Ip": "127.0.0.1"}, basic_auth=fleet.basic_auth(access))

    if status == 200:
        assert json.loads(body)["result"].get("trusted") is not True
    else:
        assert status in (401, 403)
