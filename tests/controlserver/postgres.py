"""A throwaway PostgreSQL cluster for the tests: initdb and pg_ctl in a temporary directory.

One cluster serves a whole test session. Each test gets a database of its own, copied from a
template that already carries the schema, so a server's start-up migration has nothing to do.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

from controlserver.core.db import Database

TEMPLATE_DATABASE = "fleet_template"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_postgres_user(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "nobody", "--", *command]
    return command


class PostgresCluster:
    """A PostgreSQL cluster on 127.0.0.1 with trust authentication for user `fleet`."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="fleet-postgres-", dir="/tmp"))
        self.data = self.directory / "data"
        self.log_path = self.directory / "postgres.log"
        self.port = _free_port()
        self._names = itertools.count(1)
        self._template_ready = False

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://fleet@127.0.0.1:{self.port}/{database}"

    def init(self) -> PostgresCluster:
        self.data.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.directory, "nobody")
            shutil.chown(self.data, "nobody")
        self.directory.chmod(0o755)
        self._run(["initdb", "-D", str(self.data), "-U", "fleet", "--auth=trust", "--no-sync"])
        return self.start()

    def start(self) -> PostgresCluster:
        """Start the server and wait until it accepts connections (`pg_ctl -w`)."""
        options = (f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
        self._run(["pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-o", options, "-w", "start"])
        return self

    def stop(self) -> None:
        """Stop the server; `-m fast` ends the open sessions, as a database failure would."""
        self._run(["pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"])

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(_as_postgres_user(["pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"]),
                           capture_output=True, timeout=60)
        shutil.rmtree(self.directory, ignore_errors=True)

    def create_database(self) -> str:
        """Create an empty, migrated database and return its URL."""
        if not self._template_ready:
            self._execute(f"CREATE DATABASE {TEMPLATE_DATABASE}")
            database = Database(self.url(TEMPLATE_DATABASE))
            database.migrate()
            database.dispose()
            self._template_ready = True
        name = f"fleet_{next(self._names)}"
        self._execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DATABASE}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self._execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def _execute(self, statement: str) -> None:
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=fleet dbname=postgres",
                             autocommit=True, connect_timeout=10) as connection:
            connection.execute(statement)

    def _run(self, command: list[str]) -> None:
        result = subprocess.run(_as_postgres_user(command), capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            log = self.log_path.read_text()[-2000:] if self.log_path.exists() else ""
            raise RuntimeError(f"{' '.join(command[:2])} failed ({result.returncode}): "
                               f"{result.stderr.strip()}\n{log}")
