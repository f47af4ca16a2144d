"""Fixtures: fake zrok controllers on loopback, inventories, the app in-process and as a real process.

Every test uses a real database: a SQLite file under tmp_path, or, in modules that set
`DATABASE_ENGINES = ("sqlite", "postgresql")`, also a database of its own on a throwaway
PostgreSQL cluster that the session starts once. Nothing in the database layer is mocked.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from controlserver.api.app import create_app
from controlserver.core.settings import Settings
from tests.controlserver.fakezrok import FakeZrok
from tests.controlserver.postgres import PostgresCluster

REPO = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "test-admin-token-5f0c2a9e81d34b7c"
EU_SECRET = "eu-admin-secret-a1b2c3d4e5f60718"
US_SECRET = "us-admin-secret-0f9e8d7c6b5a4932"

# Frankfurt and New York, for placement hints.
NEAR_EU = {"latitude": 50.1, "longitude": 8.7}
NEAR_US = {"latitude": 40.7, "longitude": -74.0}


def pytest_generate_tests(metafunc):
    """Run a module's tests once per engine in its DATABASE_ENGINES (default: SQLite only)."""
    engines = getattr(metafunc.module, "DATABASE_ENGINES", None)
    if engines is None or "database_engine" not in metafunc.fixturenames:
        return
    metafunc.parametrize("database_engine", [
        pytest.param(engine, marks=[pytest.mark.postgres] if engine == "postgresql" else [])
        for engine in engines
    ])


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One PostgreSQL cluster for the session, started at the first test that needs it."""
    cluster = PostgresCluster()
    try:
        yield cluster.init()
    finally:
        cluster.remove()


@pytest.fixture
def database_engine() -> str:
    """The database engine of a test; pytest_generate_tests overrides it per module."""
    return "sqlite"


@pytest.fixture
def database_url(request, tmp_path: Path, database_engine: str) -> Iterator[str]:
    """The URL of an empty database on the test's engine, removed after the test."""
    if database_engine == "sqlite":
        yield f"sqlite:///{tmp_path / 'control.db'}"
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    url = cluster.create_database()
    yield url
    cluster.drop_database(url)


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """The URL of an empty PostgreSQL database on the session's cluster, for tests that always need one."""
    url = postgres_cluster.create_database()
    yield url
    postgres_cluster.drop_database(url)


def run_sql(url: str, statement: str, **parameters) -> list[tuple]:
    """Run one SQL statement on the database at `url` and return its rows (none for writes)."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as connection:
            result = connection.execute(text(statement), parameters)
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


@pytest.fixture
def zrok_eu() -> Iterator[FakeZrok]:
    with FakeZrok(EU_SECRET) as fake:
        yield fake


@pytest.fixture
def zrok_us() -> Iterator[FakeZrok]:
    with FakeZrok(US_SECRET) as fake:
        yield fake


def frontend_vars(fake: FakeZrok, region: str, location: str, capacity: int, domain: str) -> dict:
    return {
        "ansible_host": "127.0.0.1",
        "fleet_provider": "lab",
        "fleet_region": region,
        "fleet_location": location,
        "fleet_capacity": capacity,
        "zrok_api_endpoint": fake.url,
        "zrok_share_domain": domain,
        "fleet_health_url": f"{fake.url}/healthz",
    }


def write_inventory(path: Path, hosts: dict[str, dict]) -> Path:
    path.write_text(yaml.safe_dump({"all": {"children": {"zrok_frontends": {"hosts": hosts}}}}))
    return path


@pytest.fixture
def fleet_files(tmp_path: Path, zrok_eu: FakeZrok, zrok_us: FakeZrok, database_url: str) -> dict:
    """An inventory with frontends eu-1 (Falkenstein) and us-1 (N. Virginia), capacity 5 each."""
    inventory = write_inventory(tmp_path / "inventory.yml", {
        "eu-1": frontend_vars(zrok_eu, "eu", "fsn1", 5, "eu.fleet.test"),
        "us-1": frontend_vars(zrok_us, "us", "us-east-1", 5, "us.fleet.test"),
    })
    secrets_file = tmp_path / "secrets.yml"
    secrets_file.write_text(yaml.safe_dump({"zrok_admin_secrets": {"eu-1": EU_SECRET, "us-1": US_SECRET}}))
    secrets_file.chmod(0o600)
    return {"inventory": inventory, "secrets": secrets_file, "database": tmp_path / "control.db",
            "database_url": database_url, "zrok": {"eu-1": zrok_eu, "us-1": zrok_us}, "tmp": tmp_path}


def make_settings(files: dict, **overrides) -> Settings:
    values = dict(
        inventory=files["inventory"],
        database_url=files["database_url"],
        admin_token=ADMIN_TOKEN,
        secrets_file=files["secrets"],
        monitor_enabled=False,
        watch_inventory=False,
        zrok_account_pool_size=0,
        move_batch_size=3,
    )
    values.update(overrides)
    return Settings(**values)


class Api:
    """A test client with helpers for the admin, enrollment and printer sides."""

    def __init__(self, client) -> None:
        self.client = client
        self.admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    @property
    def app(self):
        return self.client.app

    def enrollment_token(self, **body) -> str:
        response = self.client.post("/v1/enrollment-tokens", headers=self.admin, json=body)
        assert response.status_code == 200, response.text
        return response.json()["token"]

    def register(self, token: str, printer_id: str, hardware_id: str | None = None, **extra) -> httpx.Response:
        body = {"printer_id": printer_id, "hardware_id": hardware_id or f"hw-{printer_id}-0001", **extra}
        return self.client.post("/v1/printers/register", headers={"Authorization": f"Bearer {token}"}, json=body)

    def heartbeat(self, token: str, printer_id: str, frontend: str | None, **extra) -> httpx.Response:
        body = {"frontend": frontend, "share_state": "active", "moonraker_state": "ok", "klippy_state": "ready",
                **extra}
        return self.client.post(f"/v1/printers/{printer_id}/heartbeat",
                                headers={"Authorization": f"Bearer {token}"}, json=body)

    def frontends(self) -> dict[str, dict]:
        response = self.client.get("/v1/frontends", headers=self.admin)
        assert response.status_code == 200, response.text
        return {f["name"]: f for f in response.json()["frontends"]}

    def printer(self, printer_id: str) -> dict:
        response = self.client.get(f"/v1/printers/{printer_id}", headers=self.admin)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def make_api(fleet_files) -> Iterator[Callable[..., Api]]:
    """Start the app in-process (lifespan included) with settings overrides; stop it at teardown."""
    clients = []

    def start(**overrides) -> Api:
        client = TestClient(create_app(make_settings(fleet_files, **overrides)), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return Api(client)

    yield start
    for client in reversed(clients):
        client.__exit__(None, None, None)


@pytest.fixture
def api(make_api) -> Api:
    return make_api()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`python -m controlserver serve` as a child process on loopback."""

    def __init__(self, files: dict, env: dict | None = None, args: list[str] | None = None,
                 database_url: str | None = None) -> None:
        self.files = files
        self.database_url = database_url or files["database_url"]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "FLEET_ADMIN_TOKEN": ADMIN_TOKEN, "FLEET_ZROK_ACCOUNT_POOL_SIZE": "0",
                    "PYTHONPATH": str(REPO), **(env or {})}
        self.args = args or []
        self.process: subprocess.Popen | None = None
        self.log_path = files["tmp"] / f"server-{self.port}.log"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "controlserver", "serve", "--inventory", str(self.files["inventory"]),
                "--database", self.database_url, "--listen", f"127.0.0.1:{self.port}",
                "--secrets-file", str(self.files["secrets"]), *self.args]

    def start(self) -> ServerProcess:
        self.process = subprocess.Popen(self.command(), env=self.env, cwd=self.files["tmp"],
                                        stdout=subprocess.DEVNULL, stderr=open(self.log_path, "a"))
        wait_until(self._ready, f"server on port {self.port} to become ready", self)
        return self

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log()}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def log_entries(self) -> list[dict]:
        return [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]

    def client(self) -> Api:
        return Api(httpx.Client(base_url=self.url, timeout=30))


def wait_until(condition: Callable[[], bool], what: str, server: ServerProcess | None = None,
               timeout_s: float = 60) -> None:
    """Poll `condition` until it holds; fail naming `what` after a generous timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    log = f"\nserver log:\n{server.log()[-3000:]}" if server else ""
    raise AssertionError(f"timed out waiting for {what}{log}")


@pytest.fixture
def server_process(fleet_files) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(env: dict | None = None, args: list[str] | None = None) -> ServerProcess:
        server = ServerProcess(fleet_files, env, args).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
