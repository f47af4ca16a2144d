"""Several server processes on one PostgreSQL database: shared capacity, one monitor leader, and
no lost or doubled assignment when a replica is killed during a registration storm."""

from __future__ import annotations

import http.server
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import httpx
import pytest

from tests.controlserver.conftest import (
    NEAR_EU,
    NEAR_US,
    ServerProcess,
    frontend_vars,
    run_sql,
    wait_until,
    write_inventory,
)

pytestmark = pytest.mark.postgres
DATABASE_ENGINES = ("postgresql",)
LEASE_TTL_S = 2.0


def start_replica(fleet_files) -> ServerProcess:
    env = {"FLEET_LEASE_TTL_S": str(LEASE_TTL_S), "FLEET_FRONTEND_PROBE_INTERVAL_S": "0.5",
           "FLEET_MOVE_INTERVAL_S": "0.5", **fleet_files.get("env", {})}
    return ServerProcess(fleet_files, env=env).start()


@pytest.fixture
def replicas(fleet_files):
    started: list[ServerProcess] = []

    def start(count: int) -> list[ServerProcess]:
        for _ in range(count):
            started.append(start_replica(fleet_files))
        return started

    yield start
    for replica in started:
        replica.stop()


def leaders(replicas: list[ServerProcess]) -> list[bool]:
    return [httpx.get(f"{r.url}/readyz", timeout=10).json()["monitor_leader"] for r in replicas
            if r.process.poll() is None]


def metric_samples(replica: ServerProcess, name: str) -> float:
    """Sum the samples of one metric in the replica's /metrics."""
    text = httpx.get(f"{replica.url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def assignment_counts(fleet_files) -> tuple[dict, dict]:
    """Return printers per frontend and the frontends' `assigned` counters."""
    url = fleet_files["database_url"]
    per_frontend = dict(run_sql(url, "SELECT frontend, count(*) FROM printers GROUP BY frontend"))
    counters = {name: assigned for name, assigned in run_sql(url, "SELECT name, assigned FROM frontends")
                if assigned}
    return per_frontend, counters


def test_replicas_share_capacity(fleet_files, replicas):
    servers = replicas(3)
    token = servers[0].client().enrollment_token()

    def register(number: int) -> int:
        server = servers[number % 3]
        body = {"printer_id": f"printer-{number:04d}", "hardware_id": f"hw-{number:08d}", **NEAR_EU}
        with httpx.Client(base_url=server.url, timeout=60) as client:
            return client.post("/v1/printers/register", json=body,
                               headers={"Authorization": f"Bearer {token}"}).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(register, range(30)))

    assert statuses.count(200) == 10
    assert statuses.count(503) == 20
    frontends = servers[1].client().frontends()
    assert (frontends["eu-1"]["assigned"], frontends["us-1"]["assigned"]) == (5, 5)
    per_frontend, counters = assignment_counts(fleet_files)
    assert per_frontend == {"eu-1": 5, "us-1": 5}
    assert counters == per_frontend


def test_one_replica_runs_monitor(fleet_files, replicas):
    servers = replicas(3)
    token = servers[0].client().enrollment_token()
    for number in range(3):
        assert servers[number].client().register(token, f"printer-{number:04d}", **NEAR_EU).status_code == 200
    wait_until(lambda: sorted(leaders(servers)) == [False, False, True], "exactly one monitor leader")
    leader = servers[leaders(servers).index(True)]
    followers = [s for s in servers if s is not leader]

    # A drain made through a follower is carried out by the leader alone.
    followers[0].client().client.post("/v1/frontends/eu-1/drain", headers=followers[0].client().admin)
    wait_until(lambda: servers[0].client().frontends()["eu-1"]["assigned"] == 0, "the drain's moves", leader)

    assert metric_samples(leader, "fleet_frontend_probes_total") > 0
    assert metric_samples(leader, "fleet_moves_total") == 3
    for follower in followers:
        assert metric_samples(follower, "fleet_frontend_probes_total") == 0
        assert metric_samples(follower, "fleet_moves_total") == 0
    assert sorted(leaders(servers)) == [False, False, True]


def test_lease_taken_over_after_expiry(fleet_files, replicas):
    servers = replicas(2)
    wait_until(lambda: sorted(leaders(servers)) == [False, True], "exactly one monitor leader")
    leader = servers[leaders(servers).index(True)]
    follower = servers[1 - servers.index(leader)]

    leader.kill()
    [(old_holder, old_expiry)] = run_sql(fleet_files["database_url"], "SELECT holder, expires_at FROM leases")
    wait_until(lambda: leaders([follower]) == [True], "the other replica to take the lease", follower)

    [(new_holder, _)] = run_sql(fleet_files["database_url"], "SELECT holder, expires_at FROM leases")
    acquired = [datetime.fromisoformat(entry["time"]) for entry in follower.log_entries()
                if entry["message"] == "monitor lease acquired"]
    assert new_holder != old_holder
    assert new_holder.endswith(f":{follower.process.pid}")
    assert len(acquired) == 1
    # No overlap: the follower takes the lease only after the killed holder's lease expired.
    assert acquired[0] >= old_expiry - timedelta(milliseconds=1)


def test_sigkill_during_storm_loses_nothing(fleet_files, replicas):
    hosts = {
        "eu-1": frontend_vars(fleet_files["zrok"]["eu-1"], "eu", "fsn1", 30, "eu.fleet.test"),
        "us-1": frontend_vars(fleet_files["zrok"]["us-1"], "us", "us-east-1", 30, "us.fleet.test"),
    }
    write_inventory(fleet_files["inventory"], hosts)
    servers = replicas(3)
    victim = servers[1]
    token = servers[0].client().enrollment_token()
    answered = threading.Semaphore(0)
    died: set[str] = set()
    lock = threading.Lock()

    def register(number: int) -> tuple[str, int, dict]:
        """Register one printer like an agent: on a broken connection, retry on another replica."""
        printer_id = f"printer-{number:04d}"
        body = {"printer_id": printer_id, "hardware_id": f"hw-{number:08d}", **(NEAR_EU if number % 2 else NEAR_US)}
        attempt = number
        while True:
            server = servers[attempt % len(servers)]
            attempt += 1
            try:
                response = httpx.post(f"{server.url}/v1/printers/register", json=body, timeout=60,
                                      headers={"Authorization": f"Bearer {token}"})
            except httpx.TransportError:
                with lock:
                    died.add(printer_id)
                continue
            if response.status_code == 503 and response.json()["error"] != "capacity_exhausted":
                time.sleep(0.2)
                continue
            answered.release()
            return printer_id, response.status_code, response.json()

    def kill_victim() -> None:
        for _ in range(25):
            answered.acquire()
        victim.kill()

    killer = threading.Thread(target=kill_victim)
    killer.start()
    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(register, range(75)))
    killer.join()

    assert victim.process.poll() is not None
    assert died, "no request met the killed replica"
    accepted = {printer_id: body for printer_id, status, body in results if status == 200}
    rejected = [body["error"] for _, status, body in results if status != 200]
    assert len(accepted) == 60
    assert rejected == ["capacity_exhausted"] * 15

    per_frontend, counters = assignment_counts(fleet_files)
    assert per_frontend == {"eu-1": 30, "us-1": 30}
    assert counters == per_frontend
    stored = dict(run_sql(fleet_files["database_url"], "SELECT id, frontend FROM printers"))
    assert stored == {printer_id: body["assignment"]["frontend"] for printer_id, body in accepted.items()}
    accounts = run_sql(fleet_files["database_url"], "SELECT printer_id, frontend, account_token FROM zrok_accounts")
    assert sorted((p, f) for p, f, _ in accounts) == sorted(stored.items())
    assert {p: a for p, _, a in accounts} == {p: b["assignment"]["account_token"] for p, b in accepted.items()}

    # Registering again, as an agent does after a restart, returns the same assignment.
    survivor = servers[0].client()
    for printer_id, body in accepted.items():
        again = survivor.register(body["printer_token"], printer_id, hardware_id=f"hw-{int(printer_id[-4:]):08d}")
        assert again.status_code == 200, again.text
        assert again.json()["assignment"] == body["assignment"]
    assert assignment_counts(fleet_files) == (per_frontend, counters)


class SlowHandler(http.server.BaseHTTPRequestHandler):
    """A health endpoint that takes SLOW_PROBE_S to respond, longer than the lease lasts."""

    def do_GET(self) -> None:
        time.sleep(SLOW_PROBE_S)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


SLOW_PROBE_S = 6.0


def test_long_job_round_keeps_lease(fleet_files, replicas):
    slow = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    slow.daemon_threads = True
    threading.Thread(target=slow.serve_forever, daemon=True).start()
    hosts = {
        "eu-1": {**frontend_vars(fleet_files["zrok"]["eu-1"], "eu", "fsn1", 5, "eu.fleet.test"),
                 "fleet_health_url": f"http://127.0.0.1:{slow.server_address[1]}/healthz"},
        "us-1": frontend_vars(fleet_files["zrok"]["us-1"], "us", "us-east-1", 5, "us.fleet.test"),
    }
    write_inventory(fleet_files["inventory"], hosts)
    fleet_files["env"] = {"FLEET_PROBE_TIMEOUT_S": str(SLOW_PROBE_S * 2)}
    try:
        servers = replicas(2)
        wait_until(lambda: sorted(leaders(servers)) == [False, True], "exactly one monitor leader")
        leader = servers[leaders(servers).index(True)]

        # Two slow probe rounds, each about three times the lease's lifetime.
        wait_until(lambda: metric_samples(leader, "fleet_frontend_probes_total") >= 4,
                   "two rounds of frontend probes", leader)

        [(holder,)] = run_sql(fleet_files["database_url"], "SELECT holder FROM leases")
        assert holder.endswith(f":{leader.process.pid}")
        for server in servers:
            taken = [e for e in server.log_entries() if e["message"] == "monitor lease acquired"]
            assert len(taken) == (1 if server is leader else 0)
    finally:
        slow.shutdown()
        slow.server_close()


def test_moves_and_reregistrations_keep_counts(fleet_files):
    """Agents re-register on both replicas while the monitor moves the same printers off a drained
    frontend: each printer ends on one usable frontend, and every frontend's count matches."""
    write_inventory(fleet_files["inventory"], {
        "eu-1": frontend_vars(fleet_files["zrok"]["eu-1"], "eu", "fsn1", 20, "eu.fleet.test"),
        "us-1": frontend_vars(fleet_files["zrok"]["us-1"], "us", "us-east-1", 20, "us.fleet.test"),
    })
    env = {"FLEET_LEASE_TTL_S": "2", "FLEET_MOVE_INTERVAL_S": "0.2", "FLEET_MOVE_BATCH_SIZE": "2"}
    replicas = [ServerProcess(fleet_files, env=env).start() for _ in range(2)]
    try:
        admin = replicas[0].client()
        enrollment = admin.enrollment_token()
        printer_ids = [f"printer-{number:04d}" for number in range(16)]
        tokens = {}
        for printer_id in printer_ids:
            response = admin.register(enrollment, printer_id, **NEAR_EU)
            assert response.status_code == 200, response.text
            tokens[printer_id] = response.json()["printer_token"]
        clients = [replica.client() for replica in replicas]

        def reregister(number: int) -> int:
            # One request per printer at a time, as one agent sends them.
            printer_id = printer_ids[number]
            return clients[number % 2].register(tokens[printer_id], printer_id).status_code

        for drained, other in [("eu-1", "us-1"), ("us-1", "eu-1"), ("eu-1", "us-1")]:
            assert admin.client.post(f"/v1/frontends/{drained}/drain", headers=admin.admin).status_code == 200
            assert admin.client.post(f"/v1/frontends/{other}/undrain", headers=admin.admin).status_code == 200
            with ThreadPoolExecutor(max_workers=8) as pool:
                statuses = list(pool.map(reregister, range(len(printer_ids))))
            assert statuses == [200] * len(statuses)

            def moved_off() -> bool:
                return admin.frontends()[drained]["assigned"] == 0

            wait_until(moved_off, f"every printer to leave {drained}")
            listed = admin.client.get("/v1/printers", headers=admin.admin).json()["printers"]
            assert {printer["printer_id"]: printer["frontend"] for printer in listed} == dict.fromkeys(printer_ids, other)
            counts = {name: frontend["assigned"] for name, frontend in admin.frontends().items()}
            assert counts == {drained: 0, other: len(printer_ids)}
    finally:
        for replica in replicas:
            replica.stop()
