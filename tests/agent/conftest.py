"""Fixtures for the fleet agent's tests: a fake control server, a fake zrok2 CLI and Moonraker's database."""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import sqlite3
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
AGENT_PATH = REPO / "roles" / "printer_agent" / "files" / "fleet_agent.py"
FAKE_ZROK = Path(__file__).resolve().parent / "fake_zrok2.py"

ENROLLMENT_TOKEN = "enroll-secret-0123456789"
PRINTER_TOKEN = "printer-secret-abcdef0123"
ACCOUNT_TOKEN_EU = "account-eu-secret-777"
ACCOUNT_TOKEN_US = "account-us-secret-888"
SHARE_PASSWORD = "basic-pass-secret-999"
MOONRAKER_API_KEY = "0123456789abcdef0123456789abcdef"
SECRETS = [ENROLLMENT_TOKEN, PRINTER_TOKEN, ACCOUNT_TOKEN_EU, ACCOUNT_TOKEN_US, SHARE_PASSWORD, MOONRAKER_API_KEY]


def load_agent_module():
    spec = importlib.util.spec_from_file_location("fleet_agent", AGENT_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fleet_agent"] = module
    spec.loader.exec_module(module)
    return module


fleet_agent = load_agent_module()


def assignment(frontend: str = "lab-eu-1", share_name: str = "p-printer-01") -> dict[str, Any]:
    if frontend == "lab-eu-1":
        endpoint, token, domain = "https://api.lab-eu.fleet.test", ACCOUNT_TOKEN_EU, "lab-eu.fleet.test"
    else:
        endpoint, token, domain = "https://api.lab-us.fleet.test", ACCOUNT_TOKEN_US, "lab-us.fleet.test"
    return {
        "frontend": frontend,
        "region": frontend.rsplit("-", 1)[0],
        "api_endpoint": endpoint,
        "share_name": share_name,
        "public_url": f"https://{share_name}.{domain}",
        "account_token": token,
        "share_auth": {"mode": "basic", "username": "fleet", "password": SHARE_PASSWORD},
    }


@dataclass
class RecordedRequest:
    method: str
    path: str
    token: str
    body: dict[str, Any]


@dataclass
class FakeControlServer:
    """The control server side of the agent protocol, with scripted responses."""

    assignment: dict[str, Any] = field(default_factory=assignment)
    requests: list[RecordedRequest] = field(default_factory=list)
    # Each entry is the response to one request in place of the default behaviour: (status, body) or a callable.
    scripted: dict[str, list[Any]] = field(default_factory=lambda: {"register": [], "heartbeat": []})
    heartbeat_actions: list[dict[str, Any]] = field(default_factory=list)
    tokens_issued: int = 0
    moonraker_status: int = 200
    url: str = ""
    release: threading.Event = field(default_factory=threading.Event)

    def handle(self, method: str, path: str, token: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.requests.append(RecordedRequest(method, path, token, body))

        if path == "/server/info":
            if self.moonraker_status != 200:
                return self.moonraker_status, {"error": {"code": self.moonraker_status, "message": "Unauthorized"}}
            return 200, {"result": {"klippy_state": "ready", "moonraker_version": "v0.11.0"}}

        kind = "register" if path == "/v1/printers/register" else "heartbeat"
        if self.scripted[kind]:
            answer = self.scripted[kind].pop(0)
            if callable(answer):
                answer = answer()
            if answer is not None:
                return answer

        if kind == "register":
            if token == ENROLLMENT_TOKEN:
                self.tokens_issued += 1
                return 200, {
                    "printer_id": body["printer_id"],
                    "printer_token": PRINTER_TOKEN,
                    "assignment": self.assignment,
                    "heartbeat_interval_s": 30,
                }
            if token == PRINTER_TOKEN:
                return 200, {"printer_id": body["printer_id"], "assignment": self.assignment, "heartbeat_interval_s": 30}
            return 401, {"error": "invalid_token", "message": "token is unknown; enroll again"}

        if token != PRINTER_TOKEN:
            return 401, {"error": "invalid_token", "message": "token is unknown"}
        answer = {"action": "stay", "reason": "", "assignment": self.assignment, "heartbeat_interval_s": 30, "candidates": []}
        if self.heartbeat_actions:
            answer.update(self.heartbeat_actions.pop(0))
            self.assignment = answer["assignment"]
        return 200, answer

    def posts(self, kind: str) -> list[RecordedRequest]:
        if kind == "register":
            return [r for r in self.requests if r.path == "/v1/printers/register"]
        return [r for r in self.requests if r.path.endswith("/heartbeat")]


@pytest.fixture
def control_server():
    fake = FakeControlServer()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}") if length else {}
            token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            status, payload = fake.handle(self.command, self.path, token, body)
            if status == 0:  # scripted hang: hold the connection open until the test ends
                fake.release.wait(30)
                return
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = _serve
        do_POST = _serve

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.release.set()
    server.shutdown()
    server.server_close()


@dataclass
class FakeZrok:
    state_path: Path
    calls_path: Path

    def state(self) -> dict[str, Any]:
        return json.loads(self.state_path.read_text()) if self.state_path.exists() else {"instances": {}, "fail": {}}

    def set_fail(self, verb: str, status: Optional[int]) -> None:
        """Make the simulated controllers fail verb with an HTTP status, or succeed again (None)."""
        with open(self.state_path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self.state()
            state.setdefault("fail", {})
            if status is None:
                state["fail"].pop(verb, None)
            else:
                state["fail"][verb] = status
            tmp_path = self.state_path.with_suffix(".tmp")
            tmp_path.write_text(json.dumps(state))
            os.replace(tmp_path, self.state_path)

    def remove_environment_shares(self, endpoint: str, environment_zid: str) -> None:
        """Remove the shares of one environment, as the controller does when that environment is disabled."""
        with open(self.state_path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self.state()
            shares = state.get("instances", {}).get(endpoint, {}).get("shares", [])
            shares[:] = [share for share in shares if share["envZId"] != environment_zid]
            tmp_path = self.state_path.with_suffix(".tmp")
            tmp_path.write_text(json.dumps(state))
            os.replace(tmp_path, self.state_path)

    def shares(self, endpoint: str = "https://api.lab-eu.fleet.test") -> list[dict[str, Any]]:
        return self.state().get("instances", {}).get(endpoint, {}).get("shares", [])

    def calls(self) -> list[list[str]]:
        if not self.calls_path.exists():
            return []
        return [json.loads(line) for line in self.calls_path.read_text().splitlines()]

    def verbs(self) -> list[str]:
        return [" ".join(call[:2]) if call[0] in ("config", "list", "create", "delete", "share") else call[0] for call in self.calls()]

    def clear_calls(self) -> None:
        self.calls_path.write_text("")


@pytest.fixture
def fake_zrok(tmp_path, monkeypatch):
    fake = FakeZrok(tmp_path / "zrok-controllers.json", tmp_path / "zrok-calls.jsonl")
    monkeypatch.setenv("FAKE_ZROK_STATE", str(fake.state_path))
    monkeypatch.setenv("FAKE_ZROK_CALLS", str(fake.calls_path))
    return fake


@pytest.fixture
def moonraker_data(tmp_path):
    data = tmp_path / "printer_data"
    (data / "database").mkdir(parents=True)
    connection = sqlite3.connect(data / "database" / "moonraker-sql.db")
    connection.execute("CREATE TABLE authorized_users (username TEXT PRIMARY KEY, password TEXT, created_on REAL)")
    connection.execute("INSERT INTO authorized_users VALUES ('_API_KEY_USER_', ?, 0)", (MOONRAKER_API_KEY,))
    connection.commit()
    connection.close()
    return data


class FakeSleep:
    """Records requested delays instead of sleeping; an optional hook runs on each call."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.hook: Optional[Callable[[int], None]] = None

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self.hook is not None:
            self.hook(len(self.delays))


@pytest.fixture
def make_agent(tmp_path, control_server, fake_zrok, moonraker_data):
    agents = []

    def factory(**overrides: Any):
        raw = {
            "control_url": control_server.url,
            "printer_id": "printer-01",
            "enrollment_token": ENROLLMENT_TOKEN,
            "zrok2_path": str(FAKE_ZROK),
            "moonraker_url": control_server.url,
            "moonraker_data_path": str(moonraker_data),
            "state_dir": str(tmp_path / "state"),
            "region": "lab-eu",
            "latitude": 50.1,
            "longitude": 8.7,
            "request_timeout_s": 2,
            "share_stop_timeout_s": 5,
        }
        raw.update(overrides.pop("config", {}))
        config = fleet_agent.build_config(raw)
        sleep = overrides.pop("sleep", FakeSleep())
        # Only loopback is measured for real; the fake frontends' names never reach a resolver.
        probed = []

        def connect_time_ms(host: str, port: int):
            probed.append((host, port))
            return fleet_agent.tcp_connect_time_ms(host, port) if host == "127.0.0.1" else 42.0

        overrides.setdefault("connect_time_ms", connect_time_ms)
        agent = fleet_agent.FleetAgent(
            config,
            sleep=sleep,
            clock_synchronized=overrides.pop("clock_synchronized", lambda: True),
            hardware_id="ab" * 32,
            rng=fleet_agent.random.Random(7),
            **overrides,
        )
        agent.fake_sleep = sleep
        agent.probed = probed
        agents.append(agent)
        return agent

    yield factory
    for agent in agents:
        agent.shutdown()


def kill_share_process(agent) -> None:
    """SIGKILL the share process, as a crash or an OOM kill would, leaving its share on the controller."""
    agent.share.process.kill()
    agent.share.process.wait()


@pytest.fixture(autouse=True)
def _fake_zrok_is_executable():
    os.chmod(FAKE_ZROK, 0o755)
