"""Rotating secrets, as docs/operations/rotate-secrets.md describes it, against a real server process."""

from __future__ import annotations

import signal

import yaml

from tests.controlserver.conftest import ADMIN_TOKEN, EU_SECRET, NEAR_EU, US_SECRET, ServerProcess, wait_until
from tests.operations.conftest import run_controlserver

NEW_ADMIN_TOKEN = "rotated-admin-token-3c9d1e7a05b84f62"
NEW_EU_SECRET = "eu-admin-secret-rotated-9e8d7c6b5a41"


def test_admin_token_rotated_by_restart(fleet_files):
    token_file = fleet_files["tmp"] / "admin-token"
    token_file.write_text(ADMIN_TOKEN)
    server = ServerProcess(fleet_files, args=["--admin-token-file", str(token_file)])
    del server.env["FLEET_ADMIN_TOKEN"]
    server.start()
    try:
        enrolled = server.client().register(server.client().enrollment_token(), "printer-0001", **NEAR_EU).json()

        # What control_server.yml does: write the new token file, restart the service.
        token_file.write_text(NEW_ADMIN_TOKEN)
        server.stop()
        server.start()
        new = run_controlserver("status", env={"FLEET_SERVER": server.url, "FLEET_ADMIN_TOKEN": NEW_ADMIN_TOKEN})
        old = run_controlserver("status", env={"FLEET_SERVER": server.url, "FLEET_ADMIN_TOKEN": ADMIN_TOKEN})
        heartbeat = server.client().heartbeat(enrolled["printer_token"], "printer-0001",
                                              enrolled["assignment"]["frontend"])
    finally:
        server.stop()

    assert new.returncode == 0, new.stderr
    assert "1 printers assigned" in new.stdout
    assert old.returncode != 0
    assert "HTTP 401" in old.stderr
    assert heartbeat.status_code == 200
    assert heartbeat.json()["action"] == "stay"


def test_enrollment_token_revoked(server_process):
    server = server_process()
    api = server.client()
    leaked = api.enrollment_token(description="leaked batch")
    kept = api.enrollment_token(description="current batch", max_uses=5, expires_in_s=3600)
    api.register(kept, "printer-0009", **NEAR_EU)
    enrolled = api.register(leaked, "printer-0001", **NEAR_EU).json()

    listing = run_controlserver("enrollment-tokens", "--database", server.database_url)
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["ID", "CREATED", "EXPIRES", "USES", "DESCRIPTION"]
    assert lines[1].split()[0] == "1"
    assert lines[1].split()[-4:] == ["never", "unlimited", "leaked", "batch"]
    assert lines[2].split()[-3:] == ["1/5", "current", "batch"]
    assert leaked not in listing.stdout

    revoked = run_controlserver("enrollment-tokens", "--database", server.database_url, "--revoke", "1")

    assert revoked.stdout.strip() == "revoked 1 enrollment tokens"
    rejected = api.register(leaked, "printer-0002", **NEAR_EU)
    assert rejected.status_code == 401
    assert "not a valid enrollment token" in rejected.json()["message"]
    assert api.register(kept, "printer-0002", **NEAR_EU).status_code == 200
    heartbeat = api.heartbeat(enrolled["printer_token"], "printer-0001", enrolled["assignment"]["frontend"])
    assert heartbeat.status_code == 200


def test_revoke_unknown_id_changes_nothing(server_process):
    server = server_process()
    api = server.client()
    token = api.enrollment_token()

    result = run_controlserver("enrollment-tokens", "--database", server.database_url, "--revoke", "1",
                               "--revoke", "7")

    assert result.returncode == 1
    assert "no enrollment token with id 7" in result.stderr
    assert "nothing was revoked" in result.stderr
    assert api.register(token, "printer-0001", **NEAR_EU).status_code == 200


def test_revoke_all_enrollment_tokens(server_process):
    server = server_process()
    api = server.client()
    tokens = [api.enrollment_token(), api.enrollment_token()]

    result = run_controlserver("enrollment-tokens", "--database", server.database_url, "--revoke-all")

    assert result.stdout.strip() == "revoked 2 enrollment tokens"
    for number, token in enumerate(tokens):
        assert api.register(token, f"printer-{number:04d}", **NEAR_EU).status_code == 401


def test_token_command_missing_database(tmp_path):
    missing = tmp_path / "missing.db"

    result = run_controlserver("enrollment-tokens", "--database", f"sqlite:///{missing}")

    assert result.returncode == 1
    assert f"database file {missing} not found" in result.stderr
    assert not missing.exists()


def test_printer_token_rotated_by_reenrollment(server_process):
    server = server_process()
    api = server.client()
    token = api.enrollment_token()
    first = api.register(token, "printer-0001", **NEAR_EU).json()

    # The agent lost its token file and enrolls again from the same machine.
    second = api.register(token, "printer-0001", **NEAR_EU).json()

    assert second["printer_token"] != first["printer_token"]
    assert second["assignment"]["frontend"] == first["assignment"]["frontend"]
    assert api.register(first["printer_token"], "printer-0001").status_code == 401
    frontend = first["assignment"]["frontend"]
    assert api.heartbeat(first["printer_token"], "printer-0001", frontend).status_code == 401
    assert api.heartbeat(second["printer_token"], "printer-0001", frontend).json()["action"] == "stay"


def test_zrok_admin_secret_rotated_by_reload(server_process, fleet_files):
    server = server_process()
    api = server.client()
    token = api.enrollment_token()
    assert api.register(token, "printer-0001", **NEAR_EU).json()["assignment"]["frontend"] == "eu-1"

    # frontends.yml has given eu-1 its new secret; the control server still has the old one.
    fleet_files["zrok"]["eu-1"].admin_secret = NEW_EU_SECRET
    during = api.register(token, "printer-0002", **NEAR_EU)
    assert during.status_code == 503
    assert during.json()["error"] == "zrok_account_failed"

    # control_server.yml writes the secrets file and reloads the server.
    fleet_files["secrets"].write_text(yaml.safe_dump({"zrok_admin_secrets": {"eu-1": NEW_EU_SECRET, "us-1": US_SECRET}}))
    server.process.send_signal(signal.SIGHUP)
    wait_until(lambda: api.register(token, "printer-0002", **NEAR_EU).status_code == 200,
               "enrollment on eu-1 with the new admin secret", server)

    assert api.printer("printer-0002")["frontend"] == "eu-1"
    assert EU_SECRET not in server.log()
    assert NEW_EU_SECRET not in server.log()


def test_moonraker_api_key_updated(server_process):
    server = server_process()
    api = server.client()
    old_key, new_key = "0123456789abcdef" * 2, "fedcba9876543210" * 2
    enrolled = api.register(api.enrollment_token(), "printer-0001", moonraker_api_key=old_key, **NEAR_EU).json()

    # The agent registers again with its printer token after Moonraker generated a new key.
    again = api.register(enrolled["printer_token"], "printer-0001", moonraker_api_key=new_key)

    assert again.status_code == 200
    access = api.client.get("/v1/printers/printer-0001/access", headers=api.admin)
    assert access.json()["moonraker_api_key"] == new_key
