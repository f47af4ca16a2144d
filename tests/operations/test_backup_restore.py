"""Restoring the control server from a backup, as docs/operations/backup-restore.md describes it."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import threading

import httpx
import psycopg
import pytest

from tests.controlserver.conftest import NEAR_EU, NEAR_US, REPO, ServerProcess
from tests.operations.conftest import run_controlserver


def latest_revision() -> str:
    """Return the newest Alembic revision in the repository (file names start with it)."""
    versions = REPO / "controlserver" / "migrations" / "versions"
    return max(path.name.split("_", 1)[0] for path in versions.glob("[0-9]*_*.py"))


def register_printers(server: ServerProcess, names: list[str], token: str) -> dict[str, dict]:
    api = server.client()
    registered = {}
    for number, name in enumerate(names):
        hint = NEAR_EU if number % 2 == 0 else NEAR_US
        response = api.register(token, name, **hint)
        assert response.status_code == 200, response.text
        registered[name] = response.json()
    return registered


def assert_restored(server: ServerProcess, registered: dict[str, dict]) -> None:
    api = server.client()
    for name, first in registered.items():
        again = api.register(first["printer_token"], name)
        assert again.status_code == 200, again.text
        assert again.json()["assignment"] == first["assignment"]


def test_sqlite_backup_while_serving(server_process, fleet_files):
    server = server_process()
    token = server.client().enrollment_token()
    before = register_printers(server, [f"printer-{n:04d}" for n in range(4)], token)
    output = fleet_files["tmp"] / "control-backup.db"

    # Registrations keep writing while the backup runs.
    stop = threading.Event()

    def keep_registering() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for number in range(4, 10):
                if stop.is_set():
                    return
                client.post("/v1/printers/register", headers={"Authorization": f"Bearer {token}"},
                            json={"printer_id": f"printer-{number:04d}", "hardware_id": f"hw-{number:08d}", **NEAR_EU})

    writer = threading.Thread(target=keep_registering)
    writer.start()
    result = run_controlserver("backup", "--database", server.database_url, "--output", str(output))
    stop.set()
    writer.join()

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"backup written to {output}: ")
    assert f"schema revision {latest_revision()}" in result.stdout
    assert output.stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(output) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        per_frontend = dict(copy.execute("SELECT frontend, count(*) FROM printers GROUP BY frontend"))
        counters = dict(copy.execute("SELECT name, assigned FROM frontends WHERE assigned > 0"))
        stored = {row[0] for row in copy.execute("SELECT id FROM printers")}
    assert per_frontend == counters
    assert set(before) <= stored


def test_sqlite_restore_after_loss(server_process, fleet_files):
    server = server_process()
    token = server.client().enrollment_token()
    backed_up = register_printers(server, ["printer-0001", "printer-0002", "printer-0003"], token)
    frontends_at_backup = {name: f["assigned"] for name, f in server.client().frontends().items()}
    output = fleet_files["tmp"] / "control-backup.db"
    assert run_controlserver("backup", "--database", server.database_url, "--output", str(output)).returncode == 0
    lost = register_printers(server, ["printer-0004"], token)

    # The host is lost: the server dies, and the database with it.
    server.kill()
    restored_path = fleet_files["tmp"] / "restored" / "control.db"
    restored_path.parent.mkdir()
    shutil.copyfile(output, restored_path)
    restored = ServerProcess(fleet_files, database_url=f"sqlite:///{restored_path}").start()
    try:
        assert_restored(restored, backed_up)
        api = restored.client()
        assert {name: f["assigned"] for name, f in api.frontends().items()} == frontends_at_backup
        # A printer enrolled after the backup is unknown and enrolls again with an enrollment token.
        assert api.register(lost["printer-0004"]["printer_token"], "printer-0004").status_code == 401
        assert api.register(token, "printer-0004", hardware_id="hw-printer-0004-0001").status_code == 200
    finally:
        restored.stop()


def test_backup_rejects_bad_arguments(fleet_files):
    existing = fleet_files["tmp"] / "existing.db"
    existing.write_text("keep me")
    cases = [
        (["--database", f"sqlite:///{fleet_files['tmp']}/missing.db", "--output", str(fleet_files["tmp"] / "a.db")],
         "database file", "not found"),
        (["--database", f"sqlite:///{existing}", "--output", str(existing)], "already exists", "new file name"),
        (["--database", "mysql://fleet@db/fleet", "--output", str(fleet_files["tmp"] / "b.db")],
         "backend 'mysql' is not supported", "sqlite or postgresql"),
    ]
    for arguments, problem, fix in cases:
        result = run_controlserver("backup", *arguments)
        assert result.returncode != 0, arguments
        assert problem in result.stderr
        assert fix in result.stderr
    assert existing.read_text() == "keep me"
    assert sorted(p.name for p in fleet_files["tmp"].iterdir() if p.suffix == ".db") == ["existing.db"]


def test_backup_rejects_foreign_database(fleet_files):
    other = fleet_files["tmp"] / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE notes (text)")
    output = fleet_files["tmp"] / "copy.db"

    result = run_controlserver("backup", "--database", f"sqlite:///{other}", "--output", str(output))

    assert result.returncode == 1
    assert "has no control-server tables" in result.stderr
    assert not output.exists()


@pytest.mark.postgres
def test_postgresql_backup_and_restore(fleet_files, postgres_url):
    server = ServerProcess(fleet_files, database_url=postgres_url).start()
    try:
        token = server.client().enrollment_token()
        backed_up = register_printers(server, ["printer-0001", "printer-0002", "printer-0003"], token)
        frontends_at_backup = {name: f["assigned"] for name, f in server.client().frontends().items()}
        output = fleet_files["tmp"] / "control.dump"
        result = run_controlserver("backup", "--database", postgres_url, "--output", str(output))
    finally:
        server.stop()

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"backup written to {output} (pg_dump custom format)"
    assert output.stat().st_mode & 0o777 == 0o600

    # Restore into a new database, as the guide does.
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("CREATE DATABASE fleet_restored")
    restored_url = postgres_url.rsplit("/", 1)[0] + "/fleet_restored"
    restore = subprocess.run(["pg_restore", "--no-owner", "--exit-on-error", "--dbname", restored_url, str(output)],
                             capture_output=True, text=True, timeout=120)
    assert restore.returncode == 0, restore.stderr

    restored = ServerProcess(fleet_files, database_url=restored_url).start()
    try:
        assert_restored(restored, backed_up)
        assert {name: f["assigned"] for name, f in restored.client().frontends().items()} == frontends_at_backup
    finally:
        restored.stop()
