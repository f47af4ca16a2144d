"""Database engine, sessions and migrations.

SQLite runs in WAL mode with `BEGIN IMMEDIATE` for write transactions, so a write transaction
holds the database's write lock from its first statement, and a process-wide lock keeps this
process's threads from spinning on SQLITE_BUSY. PostgreSQL write transactions lock the rows they
check with `SELECT ... FOR UPDATE` instead (see services.assignment).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections import namedtuple
from collections.abc import Callable, Iterator
from datetime import datetime
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

MIGRATION_LOCK_ID = 7125_0001  # arbitrary PostgreSQL advisory lock key for schema migrations
# SQLite's default: a commit that leaves more pages than this in the write-ahead log copies the
# log into the database file before it returns.
AUTOCHECKPOINT_PAGES = 1000
# With a WalCheckpointer running, commits copy the log only past this many pages (about 40 MB),
# as a backstop should the thread fall behind.
BACKSTOP_CHECKPOINT_PAGES = 10_000
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class Database:
    """Engine plus session factories for reads and for write transactions."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        # PRAGMAs that every new SQLite connection applies. start_checkpointer() changes one of them.
        self._sqlite_pragmas = {"wal_autocheckpoint": AUTOCHECKPOINT_PAGES}
        self._checkpointer: WalCheckpointer | None = None
        if self.is_sqlite:
            self.engine = _create_sqlite_engine(url, self._sqlite_pragmas)
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
        with lock, self._write_engine.connect() as connection:
            try:
                with connection.begin():
                    yield connection
            except BaseException:
                if self.is_sqlite:
                    # A failed COMMIT can leave SQLite's transaction open (SQLITE_BUSY does), and
                    # connections go back to the pool without a reset. So end it here, or the next
                    # BEGIN fails.
                    driver = connection.connection.driver_connection
                    if driver.in_transaction:
                        driver.rollback()
                raise

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

    def start_checkpointer(self, interval_s: float = 1.0) -> None:
        """Copy SQLite's write-ahead log into the database file from a thread (file databases only).

        Without it, the commit that takes the log past AUTOCHECKPOINT_PAGES does the copy and
        its fsync, and on the request path that commit runs on the event loop (see GroupCommit).
        """
        database = self.url.database
        if not self.is_sqlite or not database or database == ":memory:" or self._checkpointer:
            return
        self._sqlite_pragmas["wal_autocheckpoint"] = BACKSTOP_CHECKPOINT_PAGES
        # Pooled connections keep the value they were opened with, so close them. The next ones
        # apply the new value.
        self.engine.dispose()
        self._checkpointer = WalCheckpointer(database, interval_s)
        self._checkpointer.start()

    def dispose(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        self.engine.dispose()


class WalCheckpointer(threading.Thread):
    """Run `PRAGMA wal_checkpoint(PASSIVE)` every `interval_s` on a connection of its own.

    A passive checkpoint waits for no reader or writer, so requests go on meanwhile. Python's
    sqlite3 releases the GIL while SQLite runs a statement (a query in a thread let the main
    thread run alongside it), so the copy and the file sync do not hold up the event loop.
    """

    def __init__(self, path: str, interval_s: float) -> None:
        super().__init__(name="sqlite-checkpoint", daemon=True)
        self.path = path
        self.interval_s = interval_s
        self._stopping = threading.Event()

    def run(self) -> None:
        connection = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            while not self._stopping.wait(self.interval_s):
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:
                    # The next round tries again. Until then, commits past the backstop copy the log.
                    log.warning("write-ahead log checkpoint failed",
                                extra={"database": self.path, "error": str(exc)})
        finally:
            connection.close()

    def close(self) -> None:
        self._stopping.set()
        self.join()


WriteFunction = Callable[..., object]


class DriverStatement:
    """A Core statement that runs on SQLite's driver connection directly, compiled once.

    It applies the same SQL and the same bind and result conversions as SQLAlchemy, but skips
    SQLAlchemy's work per execution, which costs several times more than SQLite takes to run a
    small statement. On other databases it runs through SQLAlchemy as usual.
    """

    def __init__(self, db: Database, statement, column_keys: list[str] | None = None) -> None:
        self.statement = statement
        self.on_driver = db.is_sqlite
        if not self.on_driver:
            return
        dialect = db.engine.dialect
        compiled = statement.compile(dialect=dialect, column_keys=column_keys)
        if compiled.insert_prefetch:
            names = ", ".join(column.key for column in compiled.insert_prefetch)
            raise ValueError(f"columns {names} need Python-side defaults: pass their values in column_keys")
        self.sql = compiled.string
        self.names = compiled.positiontup or []
        processors = compiled._bind_processors
        self.bindings = [(name, processors.get(name)) for name in self.names]
        # The last Connection and its driver connection, which saves two property lookups per statement.
        self._driver_of: tuple[Connection | None, object] = (None, None)
        # Values that the statement itself contains, such as the 1 of `assigned + 1`.
        self.fixed = {name: compiled.binds[name].effective_value for name in self.names
                      if not compiled.binds[name].required}
        columns = list(getattr(statement, "selected_columns", None) or [])
        if not columns and getattr(statement, "_returning", None):
            columns = list(statement._returning)
        self.row_type = namedtuple("Row", [column.key for column in columns]) if columns else None
        self.converters = [column.type._cached_result_processor(dialect, None) for column in columns]

    def _run(self, connection: Connection, values: dict):
        merged = {**self.fixed, **values} if self.fixed else values
        parameters = []
        # A registration binds the same timestamp to several columns, so it is formatted once.
        formatted: dict[tuple, object] = {}
        for name, process in self.bindings:
            value = merged[name]
            if process is None:
                parameters.append(value)
            elif type(value) is datetime:
                key = (process, value)
                if key not in formatted:
                    formatted[key] = process(value)
                parameters.append(formatted[key])
            else:
                parameters.append(process(value))
        last_connection, driver = self._driver_of
        if last_connection is not connection:
            driver = connection.connection.driver_connection
            self._driver_of = (connection, driver)
        try:
            # All rows at once, so no statement is left unfinished when the savepoint is released.
            cursor = driver.execute(self.sql, parameters)
            return cursor.fetchall(), cursor.rowcount
        except sqlite3.Error as exc:
            # The same exception types as through SQLAlchemy, so the API maps them the same way.
            raise DBAPIError.instance(self.sql, parameters, exc, sqlite3.Error) from exc

    def first(self, connection: Connection, values: dict):
        """Run the statement and return its first row (with named fields), or None."""
        if not self.on_driver:
            return connection.execute(self.statement, values).first()
        rows, _count = self._run(connection, values)
        if not rows:
            return None
        row = rows[0]
        return self.row_type(*(convert(value) if convert else value
                               for value, convert in zip(row, self.converters)))

    def rowcount(self, connection: Connection, values: dict) -> int:
        """Run the statement and return how many rows it changed."""
        if not self.on_driver:
            return connection.execute(self.statement, values).rowcount
        return self._run(connection, values)[1]


class TransactionPerCall:
    """Run each write function in a transaction of its own on a pool of threads (PostgreSQL).

    PostgreSQL runs concurrent write transactions side by side, and several replicas write to it
    at once, so each request keeps a transaction of its own there.
    """

    def __init__(self, db: Database, threads: int = 16) -> None:
        self.db = db
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="database")

    async def run(self, function: WriteFunction, *args):
        """Run `function(connection, *args)` and return its result after the commit."""
        return await asyncio.wrap_future(self._executor.submit(self._call, function, args))

    def _call(self, function: WriteFunction, args: tuple):
        with self.db.write() as connection:
            return function(connection, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


class GroupCommit:
    """Commit the writes that requests queue in one event loop iteration together (SQLite).

    SQLite runs one write transaction at a time, and beginning and committing one costs more than
    a registration's statements. So run() queues the function, and a callback that the event loop
    runs after every request that was ready has started runs the queued functions (up to
    `max_batch`, the rest in the next callback) in one transaction, each in a savepoint of its own.
    A function that raises is rolled back to its savepoint alone and its caller gets the exception;
    the others of the batch still commit. Callers get their results only after the commit, so no
    response goes out for a write that a crash could still lose. If the commit fails, every caller
    of the batch gets the error.

    The batch runs on the event loop thread. A writer thread cost about a tenth more CPU per
    registration in bench/registration_storm.py, because the GIL changed hands around every
    statement. So the loop waits while another connection holds SQLite's write lock. The server's
    own write transactions take milliseconds.

    NOTE: a long write transaction of another process, up to the busy timeout of 30 s, would
    stall every request of this one, /healthz included.
    """

    def __init__(self, db: Database, max_batch: int = 64) -> None:
        self.db = db
        self.max_batch = max_batch
        self._queued: list[tuple[asyncio.Future, WriteFunction, tuple]] = []
        self._scheduled = False

    async def run(self, function: WriteFunction, *args):
        """Run `function(connection, *args)` and return its result after its batch commits."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queued.append((future, function, args))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._run_queued)
        return await future

    def _run_queued(self) -> None:
        batch, self._queued = self._queued[:self.max_batch], self._queued[self.max_batch:]
        if self._queued:
            # Let the loop send responses and read requests before the next batch.
            asyncio.get_running_loop().call_soon(self._run_queued)
        else:
            self._scheduled = False
        # A caller that was cancelled while queued, e.g. its client disconnected, writes nothing.
        jobs = [job for job in batch if not job[0].cancelled()]
        for (future, _function, _args), ok, value in run_batch(self.db, jobs):
            if future.done():
                # Cancelled while the batch ran; the write is committed anyway.
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def close(self) -> None:
        """Do nothing: queued writes run in the event loop's next iteration."""


def run_batch(db: Database, jobs: list[tuple]) -> list[tuple[tuple, bool, object]]:
    """Run each job's `function(connection, *args)` in a savepoint of one transaction.

    Return (job, True, result) or (job, False, exception) for every job, in order.
    """
    outcomes: list[tuple[tuple, bool, object]] = []
    try:
        with db.write() as connection:
            # Savepoints go straight to the driver, which skips SQLAlchemy's work per
            # statement, as DriverStatement does.
            driver = connection.connection.driver_connection
            for job in jobs:
                _future, function, args = job
                driver.execute("SAVEPOINT fleet_write")
                try:
                    result = function(connection, *args)
                except Exception as exc:
                    driver.execute("ROLLBACK TO fleet_write")
                    driver.execute("RELEASE fleet_write")
                    outcomes.append((job, False, exc))
                else:
                    driver.execute("RELEASE fleet_write")
                    outcomes.append((job, True, result))
    except Exception as exc:
        log.error("write batch rolled back", extra={"count": len(jobs), "error": type(exc).__name__})
        failed = {id(job): value for job, ok, value in outcomes if not ok}
        outcomes = [(job, False, failed.get(id(job), exc)) for job in jobs]
    return outcomes


def _create_sqlite_engine(url: str, pragmas: dict[str, int]) -> Engine:
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
        for name, value in pragmas.items():
            cursor.execute(f"PRAGMA {name}={int(value)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        if connection.get_execution_options().get("fleet_write"):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")

    return engine
