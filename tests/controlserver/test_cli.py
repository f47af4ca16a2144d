"""The operator CLI against a real server process: tables, progress, JSON, colour, operator tokens."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pexpect
import pytest

from tests.controlserver.conftest import ADMIN_TOKEN, NEAR_EU, REPO, ServerProcess, wait_until

ALICE_TOKEN = "fleet-operator-alice-3c9d0e1f2a4b5c6d"
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
FAST_MONITOR = {
    "FLEET_FRONTEND_PROBE_INTERVAL_S": "60", "FLEET_MOVE_INTERVAL_S": "0.3", "FLEET_MOVE_BATCH_SIZE": "1",
    "FLEET_PRINTER_PROBE_INTERVAL_S": "60", "FLEET_LEASE_TTL_S": "3",
}


def cli_env(server: ServerProcess, token: str, **extra: str) -> dict:
    env = {key: value for key, value in os.environ.items()
           if key not in ("FLEET_TOKEN", "FLEET_ADMIN_TOKEN", "NO_COLOR", "FORCE_COLOR", "COLUMNS")}
    return {**env, "FLEET_TOKEN": token, "FLEET_SERVER": server.url, "PYTHONPATH": str(REPO), **extra}


def cli(server: ServerProcess, *args: str, token: str = ADMIN_TOKEN, **env: str) -> subprocess.CompletedProcess:
    """Run the CLI with its output to pipes, as a script or a log would see it."""
    return subprocess.run([sys.executable, "-m", "controlserver", *args], env=cli_env(server, token, **env),
                          capture_output=True, text=True, timeout=120)


def cli_on_terminal(server: ServerProcess, *args: str, token: str = ADMIN_TOKEN, **env: str) -> tuple[str, int]:
    """Run the CLI on a pseudo-terminal, as an operator at a shell would see it."""
    child = pexpect.spawn(sys.executable, ["-m", "controlserver", *args], env=cli_env(server, token, **env),
                          encoding="utf-8", timeout=120, dimensions=(40, 160))
    output = child.read()
    child.close()
    return output, child.exitstatus


def colour_codes(output: str) -> set[int]:
    """Return the SGR colour parameters (foreground and background) used in `output`; bold is no colour."""
    codes = set()
    for escape in ANSI_ESCAPE.finditer(output):
        for parameter in escape.group(0)[2:-1].split(";"):
            if parameter.isdigit() and (30 <= int(parameter) <= 49 or 90 <= int(parameter) <= 107):
                codes.add(int(parameter))
    return codes


def enroll(server: ServerProcess, count: int) -> dict[str, dict]:
    api = server.client()
    token = api.enrollment_token()
    return {f"printer-{n:04d}": api.register(token, f"printer-{n:04d}", moonraker_api_key="k" * 32, **NEAR_EU).json()
            for n in range(1, count + 1)}


def test_status_table_in_pipe_has_no_colour(server_process):
    server = server_process()
    enroll(server, 1)

    result = cli(server, "status")

    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["FRONTEND", "REGION", "LOCATION", "ASSIGNED", "CAPACITY", "LOAD", "HEALTH",
                                "DRAINING", "LAST", "PROBE", "ERROR"]
    assert lines[1].split() == ["eu-1", "eu", "fsn1", "1", "5", "20%", "healthy", "no"]
    assert lines[2].split() == ["us-1", "us", "us-east-1", "0", "5", "0%", "healthy", "no"]
    assert [line for line in lines if line != line.rstrip()] == []
    assert lines[-1] == "1 printers assigned, capacity 10"


def test_status_colours_on_terminal_unless_no_color(server_process):
    server = server_process()
    server.client().client.post("/v1/frontends/us-1/drain", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})

    coloured, coloured_status = cli_on_terminal(server, "status")
    plain, plain_status = cli_on_terminal(server, "status", NO_COLOR="1")

    assert coloured_status == 0
    assert colour_codes(coloured) == {32, 33}
    assert "healthy" in ANSI_ESCAPE.sub("", coloured)
    assert plain_status == 0
    assert colour_codes(plain) == set()
    plain = ANSI_ESCAPE.sub("", plain)
    assert re.search(r"us-1\s+us\s+us-east-1\s+0\s+5\s+0%\s+healthy\s+yes", plain)


def test_status_json(server_process):
    server = server_process()
    enroll(server, 1)

    result = cli(server, "status", "--json")

    assert result.returncode == 0, result.stderr
    frontends = {f["name"]: f for f in json.loads(result.stdout)}
    assert frontends["eu-1"]["assigned"] == 1
    assert frontends["us-1"]["load"] == 0


def test_printers_table_and_json(server_process):
    server = server_process(env={"FLEET_OPERATOR_TOKENS": f"alice:{ALICE_TOKEN}"})
    api = server.client()
    registered = enroll(server, 3)
    api.heartbeat(registered["printer-0001"]["printer_token"], "printer-0001", "eu-1", agent_version="1.0.0")
    api.heartbeat(registered["printer-0002"]["printer_token"], "printer-0002", "eu-1", share_state="failed")

    table = cli(server, "printers", token=ALICE_TOKEN)
    as_json = cli(server, "printers", "--json", "--frontend", "eu-1", token=ALICE_TOKEN)

    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["PRINTER", "FRONTEND", "REGION", "SHARE", "LAST", "HEARTBEAT", "MOONRAKER", "KLIPPY",
                                "PROBE", "FAILURES", "AGENT"]
    assert re.fullmatch(r"printer-0001\s+eu-1\s+active\s+\d+ s ago\s+ok\s+ready\s+0\s+1\.0\.0", lines[1].strip())
    assert re.fullmatch(r"printer-0002\s+eu-1\s+failed\s+\d+ s ago\s+ok\s+ready\s+0", lines[2].strip())
    assert re.fullmatch(r"printer-0003\s+eu-1\s+unknown\s+never\s+0", lines[3].strip())
    assert lines[-1] == "3 printers, 1 with an active share"
    assert as_json.returncode == 0, as_json.stderr
    assert [p["printer_id"] for p in json.loads(as_json.stdout)] == ["printer-0001", "printer-0002", "printer-0003"]


def test_drain_reports_progress_until_done(server_process):
    server = server_process(env=FAST_MONITOR)
    enroll(server, 3)
    wait_until(lambda: server.client().client.get("/readyz").json()["monitor_leader"], "monitor lease", server)

    result = cli(server, "drain", "eu-1", "--interval", "0.1")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    moved = [int(re.fullmatch(r"eu-1: (\d)/3 printers moved", line).group(1)) for line in lines[:-1]]
    assert moved == sorted(set(moved))
    assert moved[-1] == 3
    assert lines[-1] == "frontend eu-1 is drained: 3 of 3 printers moved"
    assert server.client().frontends()["us-1"]["assigned"] == 3


def test_drain_shows_bar_on_terminal(server_process):
    server = server_process(env=FAST_MONITOR)
    enroll(server, 2)
    wait_until(lambda: server.client().client.get("/readyz").json()["monitor_leader"], "monitor lease", server)

    output, status = cli_on_terminal(server, "drain", "eu-1", "--interval", "0.1")

    assert status == 0
    text = ANSI_ESCAPE.sub("", output)
    assert "draining eu-1" in text
    assert "━" in text
    assert re.search(r"2/2 printers moved", text)
    assert "frontend eu-1 is drained: 2 of 2 printers moved" in text


def test_drain_json_when_done(server_process):
    server = server_process(env=FAST_MONITOR)
    enroll(server, 2)

    result = cli(server, "drain", "eu-1", "--json", "--interval", "0.1")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"frontend": "eu-1", "total": 2, "moved": 2, "remaining": 0,
                                         "outcome": "done"}


def test_drain_timeout_leaves_drain_running(server_process):
    server = server_process(env={"FLEET_MONITOR_ENABLED": "false"})
    enroll(server, 2)

    result = cli(server, "drain", "eu-1", "--timeout", "0.5", "--interval", "0.1", "--json")

    assert result.returncode == 1
    assert json.loads(result.stdout)["outcome"] == "timeout"
    assert "timed out after 0.5 s with 2 of 2 printers still on eu-1; the drain goes on" in result.stderr
    assert server.client().frontends()["eu-1"]["draining"] is True


def test_drain_no_wait(server_process):
    server = server_process(env={"FLEET_MONITOR_ENABLED": "false"})
    enroll(server, 1)

    started = cli(server, "drain", "eu-1", "--no-wait")
    undrained = cli(server, "undrain", "eu-1", "--json")

    assert started.returncode == 0, started.stderr
    assert started.stdout == "frontend eu-1 is draining (1 printers assigned)\n"
    assert json.loads(undrained.stdout)["draining"] is False


def test_access_for_operator(server_process):
    server = server_process(env={"FLEET_OPERATOR_TOKENS": f"alice:{ALICE_TOKEN}"})
    registered = enroll(server, 1)["printer-0001"]
    password = registered["assignment"]["share_auth"]["password"]

    table_output = cli(server, "access", "printer-0001", token=ALICE_TOKEN)
    as_json = cli(server, "access", "printer-0001", "--json", token=ALICE_TOKEN)
    drain = cli(server, "drain", "eu-1", "--no-wait", token=ALICE_TOKEN)
    server.stop()

    assert table_output.returncode == 0, table_output.stderr
    assert [line for line in table_output.stdout.splitlines() if line != line.rstrip()] == []
    fields = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in table_output.stdout.splitlines())
    assert fields["public URL"] == "https://p-printer-0001.eu.fleet.test"
    assert fields["basic auth"] == f"fleet:{password}"
    assert fields["X-Api-Key"] == "k" * 32
    assert fields["try"] == (f"curl -u fleet:{password} -H 'X-Api-Key: {'k' * 32}' "
                             "https://p-printer-0001.eu.fleet.test/server/info")
    assert table_output.stderr == ""
    assert json.loads(as_json.stdout)["share_auth"]["password"] == password
    assert drain.returncode == 1
    assert "HTTP 403" in drain.stderr
    assert "operator token of alice does not allow manage" in drain.stderr
    granted = [e for e in server.log_entries() if e["message"] == "printer access granted"]
    assert [(e["printer"], e["operator"], e["role"]) for e in granted] == [("printer-0001", "alice", "operator")] * 2
    for secret in (ALICE_TOKEN, password, "k" * 32):
        assert secret not in server.log()


def test_access_shows_warnings(server_process):
    server = server_process(env={"FLEET_MONITOR_ENABLED": "false"})
    enroll(server, 1)
    cli(server, "drain", "eu-1", "--no-wait")

    result = cli(server, "access", "printer-0001")

    assert result.returncode == 0
    assert "warning: frontend eu-1 is draining; the printer will be moved" in result.stderr


def test_enrollment_token_json(server_process):
    server = server_process()

    result = cli(server, "enrollment-token", "--json", "--max-uses", "2", "--expires-in", "3600")

    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert created["token"].startswith("fleet-enroll-")
    assert created["max_uses"] == 2
    assert created["expires_at"]
    assert server.client().register(created["token"], "printer-0001", **NEAR_EU).status_code == 200


def test_operator_token_added_by_reload(server_process, fleet_files):
    tokens_file = fleet_files["tmp"] / "operators.yml"
    tokens_file.write_text("operator_tokens: {}\n")
    server = server_process(args=["--operator-tokens-file", str(tokens_file)])
    enroll(server, 1)

    generated = subprocess.run([sys.executable, "-m", "controlserver", "operator-token", "carol"], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    token = generated.stdout.strip()
    entry = re.search(r'^  carol: "sha256:[0-9a-f]{64}"$', generated.stderr, re.MULTILINE).group(0)
    before = cli(server, "access", "printer-0001", token=token)
    tokens_file.write_text("operator_tokens:\n" + entry + "\n")
    server.process.send_signal(signal.SIGHUP)
    wait_until(lambda: cli(server, "access", "printer-0001", token=token).returncode == 0,
               "operator carol accepted after SIGHUP", server)

    assert generated.returncode == 0
    assert token.startswith("fleet-operator-")
    assert before.returncode == 1
    assert "HTTP 401" in before.stderr
    assert token not in tokens_file.read_text()
    assert token not in server.log()


def test_operator_token_bad_name(tmp_path):
    result = subprocess.run([sys.executable, "-m", "controlserver", "operator-token", "Carol Smith"],
                            capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 1
    assert "operator name 'Carol Smith' is invalid" in result.stderr
    assert result.stdout == ""


def test_serve_rejects_bad_operator_tokens(fleet_files):
    server = ServerProcess(fleet_files, env={"FLEET_OPERATOR_TOKENS": "alice:short"})
    result = subprocess.run(server.command(), env=server.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "token of operator alice is shorter than 16 characters" in result.stderr


@pytest.mark.parametrize("args", [("status",), ("access", "printer-0001")])
def test_cli_without_token(server_process, args):
    server = server_process()
    env = {key: value for key, value in cli_env(server, "").items() if key not in ("FLEET_TOKEN",)}
    result = subprocess.run([sys.executable, "-m", "controlserver", *args], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert "no token: set FLEET_TOKEN" in result.stderr
