"""Several server processes on one PostgreSQL database: shared capacity and one monitor leader."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.controlserver.conftest import NEAR_EU, ServerProcess, free_port, frontend_vars, wait_until, write_inventory

pytestmark = pytest.mark.postgres


def _as_postgres_user(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "nobody", "--", *command]
    return command


@pytest.fixture
def postgres_url():
    if not shutil.which("initdb") or not shutil.which("postgres"):
        pytest.skip("PostgreSQL server binaries (initdb, postgres) are not installed")
    directory = Path(tempfile.mkdtemp(prefix="fleet-postgres-", dir="/tmp"))
    data = directory / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(directory, "nobody")
        shutil.chown(data, "nobody")
    directory.chmod(0o755)
    subprocess.run(_as_postgres_user(["initdb", "-D", str(data), "-U", "fleet", "--auth=trust"]),
                   check=True, capture_output=True, timeout=120)
    port = free_port()
    server = subprocess.Popen(
        _as_postgres_user(["postgres", "-D", str(data), "-p", str(port), "-k", str(directory),
                           "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]),
        stdout=subprocess.DEVNULL, stderr=open(directory / "postgres.log", "w"),
    )
    url = f"postgresql://fleet@127.0.0.1:{port}/postgres"
    try:
        import psycopg

        def accepting() -> bool:
            try:
                psycopg.connect(f"host=127.0.0.1 port={port} user=fleet dbname=postgres", connect_timeout=2).close()
                return True
            except psycopg.OperationalError:
                return False

        wait_until(accepting, "PostgreSQL to accept connections")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)


def start_replica(fleet_files, url: str) -> ServerProcess:
    env = {"FLEET_LEASE_TTL_S": "2", "FLEET_FRONTEND_PROBE_INTERVAL_S": "0.5", "FLEET_MOVE_INTERVAL_S": "0.5"}
    return ServerProcess(fleet_files, env=env, database_url=url).start()


def test_replicas_share_capacity_and_lease(fleet_files, postgres_url):
    replicas = [start_replica(fleet_files, postgres_url), start_replica(fleet_files, postgres_url)]
    try:
        token = replicas[0].client().enrollment_token()

        def register(number: int) -> int:
            server = replicas[number % 2]
            body = {"printer_id": f"printer-{number:04d}", "hardware_id": f"hw-{number:08d}", **NEAR_EU}
            with httpx.Client(base_url=server.url, timeout=60) as client:
                return client.post("/v1/printers/register", json=body,
                                   headers={"Authorization": f"Bearer {token}"}).status_code

        with ThreadPoolExecutor(max_workers=16) as pool:
            statuses = list(pool.map(register, range(30)))

        assert statuses.count(200) == 10
        assert statuses.count(503) == 20
        frontends = replicas[1].client().frontends()
        assert (frontends["eu-1"]["assigned"], frontends["us-1"]["assigned"]) == (5, 5)

        def leaders() -> list[bool]:
            return [httpx.get(f"{r.url}/readyz", timeout=10).json()["monitor_leader"] for r in replicas
                    if r.process.poll() is None]

        wait_until(lambda: sorted(leaders()) == [False, True], "exactly one monitor leader")
        leader = replicas[leaders().index(True)]
        follower = replicas[1 - replicas.index(leader)]
        leader.kill()
        wait_until(lambda: httpx.get(f"{follower.url}/readyz", timeout=10).json()["monitor_leader"],
                   "the other replica to take the lease", follower)
    finally:
        for replica in replicas:
            replica.stop()


def test_moves_and_reregistrations_keep_counts(fleet_files, postgres_url):
    """Agents re-register on both replicas while the monitor moves the same printers off a drained
    frontend: each printer ends on one usable frontend, and every frontend's count matches."""
    write_inventory(fleet_files["inventory"], {
        "eu-1": frontend_vars(fleet_files["zrok"]["eu-1"], "eu", "fsn1", 20, "eu.fleet.test"),
        "us-1": frontend_vars(fleet_files["zrok"]["us-1"], "us", "us-east-1", 20, "us.fleet.test"),
    })
    env = {"FLEET_LEASE_TTL_S": "2", "FLEET_MOVE_INTERVAL_S": "0.2", "FLEET_MOVE_BATCH_SIZE": "2"}
    replicas = [ServerProcess(fleet_files, env=env, database_url=postgres_url).start() for _ in range(2)]
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
