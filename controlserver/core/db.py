"""Database engine, sessions and migrations.

SQLite runs in WAL mode with `BEGIN IMMEDIATE` for write transactions, so a write transaction
holds the database's write lock from its first statement, and a process-wide lock keeps this
process's threads from spinning on SQLITE_BUSY. PostgreSQL write transactions lock the rows they
check with `SELECT ... FOR UPDATE` instead (see services.assignment).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

MIGRATION_LOCK_ID = 7125_0001  # arbitrary PostgreSQL advisory lock key for schema migrations
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class Database:
    """Engine plus session factories for reads and for write transactions."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            self.engine = _create_sqlite_engine(url)
        else:
            # psycopg 3 is the driver for postgresql:// URLs.
            if self.url.drivername == "postgresql":
                self.url = self.url.set(drivername="postgresql+psycopg")
            self.engine = create_engine(self.url, pool_size=10, max_overflow=10, pool_pre_ping=True)

        self._write_engine = self.engine.execution_options(fleet_write=True)
        self._read_sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(self._write_engine, expire_on_commit=False)
        self._write_lock = threading.Lock() if self.is_sqlite else None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """Open a session for reads; it is rolled back at the end."""
        with self._read_sessions() as session:
            yield session

    @contextlib.contextmanager
    def write_session(self) -> Iterator[Session]:
        """Open an ORM write transaction that commits on success and rolls back on any exception."""
        lock = self._write_lock or contextlib.nullcontext()
        with lock, self._write_sessions() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """Open a Core write transaction that commits on success and rolls back on any exception.

        The request paths use this one: a Connection costs far less per statement than a Session.
        """
        lock = self._write_lock or contextlib.nullcontext()
        with lock, self._write_engine.begin() as connection:
            yield connection

    def insert_ignoring_conflicts(self, table):
        """Return `INSERT ... ON CONFLICT DO NOTHING` for the database's dialect."""
        if self.is_sqlite:
            return sqlite_insert(table).on_conflict_do_nothing()
        return postgresql_insert(table).on_conflict_do_nothing()

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.engine.begin() as connection:
            if not self.is_sqlite:
                # Replicas starting together migrate one after the other, in one transaction each.
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def dispose(self) -> None:
        self.engine.dispose()


def _create_sqlite_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    # No rollback when a connection returns to the pool: every use ends its transaction itself
    # (Engine.begin commits or rolls back, Session.close rolls back), and the extra ROLLBACK
    # is a visible cost per request.
    engine = create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30},
                           pool_reset_on_return=None)

    @event.listens_for(engine, "connect")
    def _configure_connection(dbapi_connection, _record) -> None:
        # Leave transaction control to the "begin" hook below instead of pysqlite.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        if connection.get_execution_options().get("fleet_write"):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")

    return engine
