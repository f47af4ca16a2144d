"""The dashboard on two replicas sharing PostgreSQL: one replica's changes on the other's page."""

from __future__ import annotations

import httpx
import pytest

from tests.controlserver.conftest import ADMIN_TOKEN, NEAR_EU, NEAR_US, ServerProcess, wait_until

pytestmark = pytest.mark.postgres

SESSION_SECRET = "shared-session-secret-2b7f5c90d1e4"


def start_replica(fleet_files, url: str) -> ServerProcess:
    env = {"FLEET_SESSION_SECRET": SESSION_SECRET, "FLEET_LEASE_TTL_S": "2", "FLEET_MOVE_INTERVAL_S": "0.5",
           "FLEET_MOVE_BATCH_SIZE": "2", "FLEET_FRONTEND_PROBE_INTERVAL_S": "30"}
    return ServerProcess(fleet_files, env=env, database_url=url).start()


def test_replicas_share_events_and_sessions(fleet_files, postgres_url):
    replicas = [start_replica(fleet_files, postgres_url), start_replica(fleet_files, postgres_url)]
    try:
        first, second = (httpx.Client(base_url=r.url, timeout=30) for r in replicas)
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        token = first.post("/v1/enrollment-tokens", headers=admin, json={}).json()["token"]
        for number, placement in enumerate([NEAR_EU, NEAR_EU, NEAR_US]):
            body = {"printer_id": f"printer-{number}", "hardware_id": f"hw-{number:08d}", **placement}
            assert first.post("/v1/printers/register", json=body,
                              headers={"Authorization": f"Bearer {token}"}).status_code == 200

        login = first.post("/dashboard/login", data={"token": ADMIN_TOKEN}, follow_redirects=False)
        assert login.status_code == 303
        second.cookies.set("fleet_dashboard", first.cookies["fleet_dashboard"], path="/dashboard")
        assert first.post("/v1/frontends/eu-1/drain", headers=admin).status_code == 200

        def moves_seen_on_second() -> bool:
            events = second.get("/dashboard/api/events").json()["events"]
            return sum(e["kind"] == "move" for e in events) == 2

        wait_until(moves_seen_on_second, "both moves in the second replica's event list")
        overview = second.get("/dashboard/api/overview").json()
        panels = {f["name"]: f for region in overview["regions"] for f in region["frontends"]}
        events = second.get("/dashboard/api/events").json()["events"]

        assert panels["eu-1"]["state"] == "draining"
        assert (panels["eu-1"]["assigned"], panels["us-1"]["assigned"]) == (0, 3)
        assert [e["kind"] for e in events][:3] == ["move", "move", "drain"]
        assert {(c["latitude"], c["longitude"]): c["count"] for c in overview["printer_clusters"]} == {
            (50.1, 8.7): 2, (40.7, -74.0): 1}
        printers = second.get("/dashboard/api/printers", params={"region": "us"}).json()
        assert printers["total"] == 3
    finally:
        for replica in replicas:
            replica.stop()
