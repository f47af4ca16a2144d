"""Draining and undraining a frontend around an upgrade, as docs/operations/drain-upgrade-frontend.md
describes it, with the operator commands against a real server process."""

from __future__ import annotations

import json

from tests.controlserver.conftest import ADMIN_TOKEN, NEAR_EU, wait_until
from tests.operations.conftest import run_controlserver

FAST_MONITOR = {
    "FLEET_FRONTEND_PROBE_INTERVAL_S": "0.2", "FLEET_MOVE_INTERVAL_S": "0.2", "FLEET_MOVE_BATCH_SIZE": "2",
    "FLEET_PRINTER_PROBE_INTERVAL_S": "3600", "FLEET_LEASE_TTL_S": "3",
}


def test_drain_wait_undrain(server_process):
    server = server_process(env=FAST_MONITOR)
    api = server.client()
    operator = {"FLEET_SERVER": server.url, "FLEET_ADMIN_TOKEN": ADMIN_TOKEN}
    token = api.enrollment_token()
    tokens = {}
    for number in range(3):
        printer_id = f"printer-{number:04d}"
        registered = api.register(token, printer_id, **NEAR_EU).json()
        assert registered["assignment"]["frontend"] == "eu-1"
        tokens[printer_id] = registered["printer_token"]

    drained = run_controlserver("drain", "eu-1", "--timeout", "120", env=operator)

    def assigned_to_eu() -> int:
        status = run_controlserver("status", "--json", env=operator)
        return {f["name"]: f["assigned"] for f in json.loads(status.stdout)}["eu-1"]

    assert drained.returncode == 0, drained.stderr
    assert drained.stdout.strip().splitlines()[-1] == "frontend eu-1 is drained: 3 of 3 printers moved"
    assert assigned_to_eu() == 0
    for printer_id, printer_token in tokens.items():
        answer = api.heartbeat(printer_token, printer_id, "eu-1").json()
        assert answer["action"] == "move"
        assert answer["assignment"]["frontend"] == "us-1"

    # The upgrade happens here; the frontend stays healthy, then takes printers again.
    undrained = run_controlserver("undrain", "eu-1", env=operator)
    newcomer = api.register(token, "printer-0003", **NEAR_EU).json()

    assert undrained.returncode == 0
    assert newcomer["assignment"]["frontend"] == "eu-1"
    for printer_id, printer_token in tokens.items():
        assert api.heartbeat(printer_token, printer_id, "us-1").json()["action"] == "stay"
    metrics = api.client.get("/metrics").text
    assert 'fleet_moves_total{from_frontend="eu-1",reason="draining"} 3.0' in metrics
