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

from tests.controlserver.conftest import NEAR_EU, ServerProcess, free_port, wait_until

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
