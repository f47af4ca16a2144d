"""`python -m controlserver backup`: a consistent copy of the control server's database.

SQLite: SQLite's online backup API copies the database page by page inside one read transaction,
so the copy is consistent while the server keeps writing (WAL mode lets readers and the writer run
side by side). Copying the file with `cp` instead can miss the transactions still in the `-wal`
file or catch a page half written. PostgreSQL: `pg_dump --format=custom`, which reads one
snapshot; restore it with `pg_restore`.

The copy contains zrok account tokens, share passwords and Moonraker API keys in clear text, so it
is written with mode 0600.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from controlserver.database_option import add_database_option, database_url_missing


class BackupError(Exception):
    """A backup that could not be made; the message names the cause and the fix."""


@dataclass(frozen=True)
class BackupSummary:
    path: Path
    schema_revision: str | None
    printers: int | None
    frontends: int | None


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the `backup` subcommand to the CLI's subparsers."""
    backup = commands.add_parser(
        "backup", help="write a consistent copy of the database while the server runs",
        description="Write a consistent copy of the control server's database. SQLite uses the online "
                    "backup API; PostgreSQL uses pg_dump --format=custom (restore with pg_restore).")
    add_database_option(backup, "SQLAlchemy URL of the database to copy (FLEET_DATABASE_URL), "
                                "e.g. sqlite:////var/lib/printer-fleet/control.db")
    backup.add_argument("--output", type=Path, required=True,
                        help="file to write; it must not exist yet and is created with mode 0600")
    backup.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if database_url_missing(args):
        return 2
    try:
        summary = backup(args.database_url, args.output)
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    if summary.printers is None:
        print(f"backup written to {summary.path} (pg_dump custom format)")
    else:
        print(f"backup written to {summary.path}: {summary.printers} printers, {summary.frontends} frontends, "
              f"schema revision {summary.schema_revision}")
    return 0


def backup(database_url: str, output: Path) -> BackupSummary:
    """Copy the database at `database_url` to `output`; raise BackupError naming the cause."""
    try:
        url = make_url(database_url)
    except ArgumentError:
        raise BackupError(f"--database {database_url!r} is not a valid SQLAlchemy URL: "
                          "use sqlite:////path/to/control.db or postgresql://user@host/db") from None
    if output.exists():
        raise BackupError(f"--output {output} already exists: choose a new file name, e.g. with a date in it")
    if not output.parent.is_dir():
        raise BackupError(f"--output {output}: directory {output.parent} does not exist: create it first")

    backend = url.get_backend_name()
    if backend == "sqlite":
        return _backup_sqlite(url, output)
    if backend == "postgresql":
        return _backup_postgresql(url, output)
    raise BackupError(f"--database: backend {backend!r} is not supported: use sqlite or postgresql")


@contextlib.contextmanager
def _private_temporary_file(output: Path):
    """Yield a new mode-0600 file beside `output`; move it to `output` only if the block succeeds."""
    handle, name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        # os.link fails when `output` appeared meanwhile, so an existing file is never replaced.
        os.link(temporary, output)
    except FileExistsError:
        raise BackupError(f"--output {output} was created by someone else during the backup: "
                          "choose a new file name") from None
    finally:
        temporary.unlink(missing_ok=True)


def _backup_sqlite(url: URL, output: Path) -> BackupSummary:
    if not url.database or url.database == ":memory:":
        raise BackupError("--database names no SQLite file: use sqlite:////absolute/path/to/control.db")
    source_path = Path(url.database)
    if not source_path.is_file():
        raise BackupError(f"database file {source_path} not found: check --database")

    with _private_temporary_file(output) as temporary:
        try:
            # mode=rw: never create an empty database when the path is wrong.
            source = sqlite3.connect(f"file:{source_path}?mode=rw", uri=True, timeout=30)
            copy = sqlite3.connect(temporary)
            try:
                source.backup(copy)
                # A single self-contained file: restoring it needs no -wal file beside it.
                copy.execute("PRAGMA journal_mode=DELETE")
                return _check_sqlite_copy(copy, output)
            finally:
                copy.close()
                source.close()
        except sqlite3.Error as exc:
            raise BackupError(f"SQLite backup of {source_path} failed: {exc}") from None


def _check_sqlite_copy(copy: sqlite3.Connection, output: Path) -> BackupSummary:
    integrity = copy.execute("PRAGMA integrity_check").fetchone()[0]
    if integrity != "ok":
        raise BackupError(f"the copy failed SQLite's integrity check ({integrity}); the source may be damaged")
    tables = {row[0] for row in copy.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not {"alembic_version", "printers", "frontends"} <= tables:
        raise BackupError("the database has no control-server tables: check that --database names the "
                          "control server's database")
    revision = copy.execute("SELECT version_num FROM alembic_version").fetchone()
    return BackupSummary(
        path=output,
        schema_revision=revision[0] if revision else None,
        printers=copy.execute("SELECT count(*) FROM printers").fetchone()[0],
        frontends=copy.execute("SELECT count(*) FROM frontends").fetchone()[0],
    )


def _backup_postgresql(url: URL, output: Path) -> BackupSummary:
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise BackupError("pg_dump not found: install the PostgreSQL client (Debian: postgresql-client) "
                          "in the server's major version or newer")

    # The password goes through the environment, so it never shows in the process list.
    environment = dict(os.environ)
    if url.password is not None:
        environment["PGPASSWORD"] = str(url.password)
    libpq_url = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)

    with _private_temporary_file(output) as temporary:
        result = subprocess.run(
            [pg_dump, "--format=custom", "--no-owner", "--file", str(temporary), "--dbname", libpq_url],
            env=environment, capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            message = result.stderr.strip()
            if url.password:
                message = message.replace(str(url.password), "********")
            raise BackupError(f"pg_dump failed with exit status {result.returncode}: {message}")
    return BackupSummary(path=output, schema_revision=None, printers=None, frontends=None)
