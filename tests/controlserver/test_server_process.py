"""The control server as a real process: restart, reloads, monitor, concurrency, CLI, TLS."""

from __future__ import annotations

import datetime
import os
import signal
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.controlserver.conftest import ADMIN_TOKEN, NEAR_EU, REPO, ServerProcess, wait_until


def test_restart_without_loss(server_process):
    server = server_process()
    api = server.client()
    token = api.enrollment_token()
    registered = {f"printer-{n:04d}": api.register(token, f"printer-{n:04d}", **NEAR_EU).json() for n in range(6)}
    frontends_before = api.frontends()

    server.kill()
    server.start()
    api = server.client()

    for printer_id, first in registered.items():
        again = api.register(first["printer_token"], printer_id)
        assert again.status_code == 200, again.text
        assert again.json()["assignment"] == first["assignment"]
        assert api.heartbeat(first["printer_token"], printer_id, first["assignment"]["frontend"]).json()["action"] == "stay"
    assert {n: f["assigned"] for n, f in api.frontends().items()} == {n: f["assigned"] for n, f in frontends_before.items()}


def test_capacity_holds_under_concurrent_registrations(server_process, fleet_files):
    server = server_process()
    api = server.client()
    token = api.enrollment_token()

    def register(number: int) -> int:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            body = {"printer_id": f"printer-{number:04d}", "hardware_id": f"hw-{number:08d}", **NEAR_EU}
            return client.post("/v1/printers/register", json=body,
                               headers={"Authorization": f"Bearer {token}"}).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(register, range(30)))

    assert statuses.count(200) == 10
    assert statuses.count(503) == 20
    with sqlite3.connect(fleet_files["database"]) as connection:
        per_frontend = dict(connection.execute("SELECT frontend, count(*) FROM printers GROUP BY frontend"))
        counters = dict(connection.execute("SELECT name, assigned FROM frontends"))
    assert per_frontend == {"eu-1": 5, "us-1": 5}
    assert counters == per_frontend


def test_sighup_reloads_inventory(server_process, fleet_files):
    server = server_process()
    api = server.client()
    path = fleet_files["inventory"]
    good_text = path.read_text()

    path.write_text(good_text.replace("fleet_capacity: 5", "fleet_capacity: 8"))
    server.process.send_signal(signal.SIGHUP)
    wait_until(lambda: {f["capacity"] for f in api.frontends().values()} == {8}, "capacity 8 after SIGHUP", server)

    path.write_text(good_text.replace("fleet_region: eu", "fleet_region: ''"))
    server.process.send_signal(signal.SIGHUP)
    wait_until(lambda: api.client.get("/readyz").json()["inventory_error"] is not None, "rejection", server)

    assert "frontend eu-1: fleet_region is missing" in api.client.get("/readyz").json()["inventory_error"]
    assert {f["capacity"] for f in api.frontends().values()} == {8}
    rejected = [e for e in server.log_entries() if e["message"].startswith("inventory rejected")]
    assert rejected[0]["level"] == "error"
    assert "fleet_region is missing" in rejected[0]["error"]


def test_file_change_reloads_inventory(server_process, fleet_files):
    server = server_process()
    api = server.client()
    path = fleet_files["inventory"]

    path.write_text(path.read_text().replace("fleet_capacity: 5", "fleet_capacity: 9"))

    wait_until(lambda: {f["capacity"] for f in api.frontends().values()} == {9}, "reload on file change", server)


def test_monitor_moves_printers_off_failed_frontend(server_process, fleet_files):
    server = server_process(env={
        "FLEET_FRONTEND_PROBE_INTERVAL_S": "0.2", "FLEET_MOVE_INTERVAL_S": "0.2", "FLEET_UNHEALTHY_AFTER": "2",
        "FLEET_HEALTHY_AFTER": "2", "FLEET_MOVE_BATCH_SIZE": "2", "FLEET_PRINTER_PROBE_INTERVAL_S": "60",
        "FLEET_LEASE_TTL_S": "3",
    })
    api = server.client()
    token = api.enrollment_token()
    tokens = {f"printer-{n:04d}": api.register(token, f"printer-{n:04d}", **NEAR_EU).json()["printer_token"]
              for n in range(3)}
    wait_until(lambda: api.client.get("/readyz").json()["monitor_leader"], "monitor lease", server)

    fleet_files["zrok"]["eu-1"].healthy = False
    wait_until(lambda: api.frontends()["us-1"]["assigned"] == 3, "printers moved to us-1", server)
    actions = {p: api.heartbeat(t, p, "eu-1").json() for p, t in tokens.items()}
    fleet_files["zrok"]["eu-1"].healthy = True
    wait_until(lambda: api.frontends()["eu-1"]["healthy"], "eu-1 healthy again", server)

    assert all(a["action"] == "move" and a["assignment"]["frontend"] == "us-1" for a in actions.values())
    assert api.frontends()["eu-1"]["assigned"] == 0
    entries = server.log_entries()
    unhealthy = [e for e in entries if e["message"].startswith("frontend unhealthy")]
    assert unhealthy[0]["frontend"] == "eu-1"
    batches = [e["moved"] for e in entries if e["message"] == "move batch done"]
    assert max(batches) <= 2
    assert sum(batches) == 3
    metrics = api.client.get("/metrics").text
    assert 'fleet_moves_total{from_frontend="eu-1",reason="unhealthy"} 3.0' in metrics


def test_logs_name_printers_without_secrets(server_process, fleet_files):
    server = server_process()
    api = server.client()
    token = api.enrollment_token()
    registered = api.register(token, "printer-0001", moonraker_api_key="feedface" * 4, **NEAR_EU).json()
    api.heartbeat(registered["printer_token"], "printer-0001", "us-1")
    server.stop()

    log = server.log()
    entries = server.log_entries()
    assert any(e["message"] == "printer enrolled" and e["printer"] == "printer-0001" for e in entries)
    assert any(e["message"] == "zrok account created" and e["frontend"] == "eu-1" for e in entries)
    for secret in (token, registered["printer_token"], registered["assignment"]["account_token"],
                   registered["assignment"]["share_auth"]["password"], "feedface" * 4, ADMIN_TOKEN,
                   "eu-admin-secret-a1b2c3d4e5f60718"):
        assert secret not in log


def run_cli(server: ServerProcess, *args: str, token: str = ADMIN_TOKEN) -> subprocess.CompletedProcess:
    env = dict(os.environ, FLEET_ADMIN_TOKEN=token, FLEET_SERVER=server.url, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "controlserver", *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_cli_operator_commands(server_process):
    server = server_process()

    token = run_cli(server, "enrollment-token", "--max-uses", "1")
    registered = server.client().register(token.stdout.strip(), "printer-0001", **NEAR_EU)
    drained = run_cli(server, "drain", "eu-1", "--no-wait")
    status = run_cli(server, "status")
    undrained = run_cli(server, "undrain", "eu-1")
    unknown = run_cli(server, "drain", "nowhere-1")

    assert token.returncode == 0
    assert registered.status_code == 200
    assert drained.stdout.strip() == "frontend eu-1 is draining (1 printers assigned)"
    lines = status.stdout.splitlines()
    assert lines[0].split() == ["FRONTEND", "REGION", "LOCATION", "ASSIGNED", "CAPACITY", "LOAD", "HEALTH",
                                "DRAINING", "LAST", "PROBE", "ERROR"]
    assert lines[1].split()[:8] == ["eu-1", "eu", "fsn1", "1", "5", "20%", "healthy", "yes"]
    assert lines[-1] == "1 printers assigned, capacity 10"
    assert undrained.returncode == 0
    assert unknown.returncode != 0
    assert "frontend nowhere-1 is not in the inventory" in unknown.stderr


def test_cli_wrong_admin_token(server_process):
    server = server_process()
    result = run_cli(server, "status", token="not-the-admin-token-00000000")
    assert result.returncode != 0
    assert "HTTP 401" in result.stderr


@pytest.mark.parametrize("token,expected", [
    ("changeme", "placeholder value"), ("short-token", "shorter than 16 characters"), ("<admin-token>", "placeholder"),
])
def test_serve_rejects_placeholder_admin_token(fleet_files, token, expected):
    server = ServerProcess(fleet_files, env={"FLEET_ADMIN_TOKEN": token})
    result = subprocess.run(server.command(), env=server.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert expected in result.stderr
    assert token not in result.stderr.replace(expected, "")


def test_serve_rejects_broken_inventory(fleet_files):
    fleet_files["inventory"].write_text(fleet_files["inventory"].read_text().replace("fleet_capacity: 5", "fleet_capacity: x", 1))
    server = ServerProcess(fleet_files)
    result = subprocess.run(server.command(), env=server.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "frontend eu-1: fleet_capacity 'x' is invalid" in result.stderr


def test_serves_tls(server_process, fleet_files):
    ca_file, cert_file, key_file = make_certificates(fleet_files["tmp"])
    server = ServerProcess(fleet_files, args=["--tls-cert", str(cert_file), "--tls-key", str(key_file)])
    server.url = f"https://127.0.0.1:{server.port}"
    server._ready = lambda: _tls_ready(server, ca_file)
    server.start()
    try:
        with httpx.Client(verify=_context(ca_file)) as client:
            assert client.get(f"{server.url}/healthz").json() == {"status": "ok"}
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/healthz")
        result = run_cli(server, "status", "--ca-file", str(ca_file))
        assert result.returncode == 0, result.stderr
    finally:
        server.stop()


def _context(ca_file):
    from controlserver.core.tls import client_ssl_context
    return client_ssl_context(ca_file)


def _tls_ready(server: ServerProcess, ca_file) -> bool:
    if server.process.poll() is not None:
        raise AssertionError(f"server exited:\n{server.log()}")
    try:
        return httpx.get(f"{server.url}/readyz", verify=_context(ca_file), timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def make_certificates(directory):
    """Write a test CA and a certificate for 127.0.0.1 signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fleet test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ca_file, cert_file, key_file
