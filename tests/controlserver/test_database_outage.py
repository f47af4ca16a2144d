"""The PostgreSQL server goes away for a while and comes back: meanwhile the control server
returns 503 with a JSON error and writes nothing half, and it recovers without a restart."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.controlserver.conftest import NEAR_EU, ServerProcess, run_sql, wait_until
from tests.controlserver.postgres import PostgresCluster

pytestmark = pytest.mark.postgres


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    """A cluster of this test's own, because the test stops it."""
    cluster = PostgresCluster()
    try:
        yield cluster.init()
    finally:
        cluster.remove()


def assert_unavailable(response: httpx.Response, code: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["retry-after"]) > 0
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == code
    assert body["message"]


def database_state(url: str) -> tuple:
    return (run_sql(url, "SELECT id, frontend, token_hash, last_heartbeat_at FROM printers ORDER BY id"),
            run_sql(url, "SELECT name, assigned, draining FROM frontends ORDER BY name"),
            run_sql(url, "SELECT count(*) FROM enrollment_tokens"),
            run_sql(url, "SELECT printer_id, frontend FROM zrok_accounts ORDER BY printer_id"))


def test_database_outage_and_recovery(fleet_files, own_cluster):
    url = own_cluster.create_database()
    fleet_files["database_url"] = url
    server = ServerProcess(fleet_files, env={"FLEET_LEASE_TTL_S": "2", "FLEET_MOVE_INTERVAL_S": "0.5"}).start()
    try:
        api = server.client()
        token = api.enrollment_token()
        first = api.register(token, "printer-0001", **NEAR_EU).json()
        printer_token = first["printer_token"]
        before = database_state(url)
        wait_until(lambda: api.client.get("/readyz").json()["monitor_leader"], "the monitor lease", server)

        own_cluster.stop()

        assert_unavailable(api.register(token, "printer-0002", **NEAR_EU), "database_unavailable")
        assert_unavailable(api.register(printer_token, "printer-0001"), "database_unavailable")
        assert_unavailable(api.heartbeat(printer_token, "printer-0001", "eu-1"), "database_unavailable")
        assert_unavailable(api.client.post("/v1/enrollment-tokens", headers=api.admin, json={}),
                           "database_unavailable")
        assert_unavailable(api.client.post("/v1/frontends/eu-1/drain", headers=api.admin), "database_unavailable")
        assert_unavailable(api.client.get("/v1/printers", headers=api.admin), "database_unavailable")
        assert_unavailable(api.client.delete("/v1/printers/printer-0001", headers=api.admin),
                           "database_unavailable")
        assert_unavailable(api.client.get("/readyz"), "not_ready")
        assert api.client.get("/healthz").status_code == 200
        assert server.process.poll() is None

        own_cluster.start()

        wait_until(lambda: api.client.get("/readyz").status_code == 200, "/readyz to recover", server)
        assert database_state(url) == before
        again = api.register(printer_token, "printer-0001")
        assert again.status_code == 200, again.text
        assert again.json()["assignment"] == first["assignment"]
        assert api.heartbeat(printer_token, "printer-0001", "eu-1").json()["action"] == "stay"
        assert api.register(token, "printer-0002", **NEAR_EU).status_code == 200
        assert api.frontends()["eu-1"]["assigned"] == 2
        wait_until(lambda: api.client.get("/readyz").json()["monitor_leader"], "the monitor lease again", server)
        assert server.process.poll() is None
        assert [e for e in server.log_entries() if e["message"] == "unexpected error"] == []
    finally:
        server.stop()
