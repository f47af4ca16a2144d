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
import queue
import sqlite3
import threading
from collections import namedtuple
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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

    def dispose(self) -> None:
        self.engine.dispose()


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
        self.processors = [processors.get(name) for name in self.names]
        # Values that the statement itself contains, such as the 1 of `assigned + 1`.
        self.fixed = {name: compiled.binds[name].effective_value for name in self.names
                      if not compiled.binds[name].required}
        columns = list(getattr(statement, "selected_columns", None) or [])
        if not columns and getattr(statement, "_returning", None):
            columns = list(statement._returning)
        self.row_type = namedtuple("Row", [column.key for column in columns]) if columns else None
        self.converters = [column.type._cached_result_processor(dialect, None) for column in columns]

    def _run(self, connection: Connection, values: dict):
        merged = {**self.fixed, **values}
        parameters = [
            process(merged[name]) if process else merged[name]
            for name, process in zip(self.names, self.processors)
        ]
        try:
            # All rows at once, so no statement is left unfinished when the savepoint is released.
            cursor = connection.connection.driver_connection.execute(self.sql, parameters)
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
    """Run write functions on one thread and commit the queued ones in one transaction (SQLite).

    SQLite runs one write transaction at a time, and beginning and committing one costs more than
    a registration's statements. So the writer thread takes every function that queued up while
    the previous batch ran (up to `max_batch`), runs each in a savepoint of one transaction, and
    commits once. A function that raises is rolled back to its savepoint alone and its caller
    gets the exception; the others of the batch still commit. Callers get their results only
    after the commit, so no response goes out for a write that a crash could still lose. If the
    commit fails, every caller of the batch gets the error.
    """

    def __init__(self, db: Database, max_batch: int = 64) -> None:
        self.db = db
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    async def run(self, function: WriteFunction, *args):
        """Run `function(connection, *args)` and return its result after its batch commits.

        The result comes back through an asyncio future that the writer completes with one
        call into the event loop per batch. A concurrent.futures.Future per request, wrapped
        with asyncio.wrap_future, cost a lock, a condition and a loop wake-up each.
        """
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._put((future, function, args, loop))
        return await future

    def submit(self, function: WriteFunction, *args) -> Future:
        """Queue `function(connection, *args)` from any thread; the Future completes after the commit."""
        future: Future = Future()
        self._put((future, function, args, None))
        return future

    def _put(self, job: tuple) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="database-writer", daemon=True)
                self._thread.start()
        self._queue.put(job)

    def close(self) -> None:
        """Run what is queued, then stop the writer thread."""
        with self._start_lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            batch = [job]
            stopping = False
            while len(batch) < self.max_batch:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                batch.append(job)
            self._run_batch(batch)
            if stopping:
                return

    def _run_batch(self, batch: list) -> None:
        jobs = [job for job in batch if _start(job)]
        outcomes: list[tuple[tuple, bool, object]] = []
        try:
            with self.db.write() as connection:
                # Savepoints go straight to the driver, which skips SQLAlchemy's work per
                # statement, as DriverStatement does.
                driver = connection.connection.driver_connection
                for job in jobs:
                    _future, function, args, _loop = job
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
        _deliver(outcomes)


def _start(job: tuple) -> bool:
    """Tell whether a queued job still has a caller waiting for it."""
    future, _function, _args, loop = job
    if loop is None:
        return future.set_running_or_notify_cancel()
    # Read from the writer thread: a cancel that comes later is handled in _set_outcomes.
    return not future.cancelled()


def _deliver(outcomes: list[tuple[tuple, bool, object]]) -> None:
    """Hand each job's result or exception to its caller, one event loop call per loop."""
    per_loop: dict[asyncio.AbstractEventLoop, list] = {}
    for outcome in outcomes:
        (future, _function, _args, loop), ok, value = outcome
        if loop is None:
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        else:
            per_loop.setdefault(loop, []).append(outcome)
    for loop, loop_outcomes in per_loop.items():
        try:
            loop.call_soon_threadsafe(_set_outcomes, loop_outcomes)
        except RuntimeError:
            # The event loop closed while the batch ran at server shutdown, so no request waits for these results.
            log.warning("write results dropped: the event loop is closed", extra={"count": len(loop_outcomes)})


def _set_outcomes(outcomes: list[tuple[tuple, bool, object]]) -> None:
    for (future, _function, _args, _loop), ok, value in outcomes:
        if future.done():
            # The caller was cancelled, e.g. its client disconnected; the write is committed anyway.
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


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
