"""The write-ahead log checkpointer: a thread, not a request's commit, copies SQLite's log into the database file."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import insert, text

from controlserver.core.db import AUTOCHECKPOINT_PAGES, BACKSTOP_CHECKPOINT_PAGES, Database
from controlserver.models import EnrollmentToken, utcnow

TOKENS = EnrollmentToken.__table__
# Generous: the thread copies within one interval of 0.05 s.
COPY_DEADLINE_S = 30.0


@pytest.fixture
def database_path(tmp_path: Path) -> Path:
    return tmp_path / "control.db"


@pytest.fixture
def db(database_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{database_path}")
    database.migrate()
    # Start from an empty log, with everything so far in the database file.
    with database.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    yield database
    database.dispose()


def write_tokens(db: Database, count: int) -> None:
    with db.write() as connection:
        connection.execute(insert(TOKENS), [
            {"token_hash": f"hash-{index:05d}-" + "x" * 200, "description": "checkpoint test",
             "created_at": utcnow(), "uses": 0}
            for index in range(count)])


def autocheckpoint_pages(db: Database) -> int:
    with db.engine.connect() as connection:
        return connection.execute(text("PRAGMA wal_autocheckpoint")).scalar_one()


def wait_for_growth(path: Path, size: int) -> int:
    deadline = time.monotonic() + COPY_DEADLINE_S
    while path.stat().st_size <= size and time.monotonic() < deadline:
        time.sleep(0.05)
    return path.stat().st_size


def test_checkpointer_copies_log_to_file(db: Database, database_path: Path):
    db.start_checkpointer(interval_s=0.05)
    size_before = database_path.stat().st_size

    write_tokens(db, 100)

    assert wait_for_growth(database_path, size_before) > size_before
    assert autocheckpoint_pages(db) == BACKSTOP_CHECKPOINT_PAGES


def test_small_writes_stay_in_log(db: Database, database_path: Path):
    # Without the checkpointer, the same writes leave the database file as it was. So the
    # growth in the test above is the checkpointer's work.
    size_before = database_path.stat().st_size

    write_tokens(db, 100)
    time.sleep(0.3)

    assert database_path.stat().st_size == size_before
    assert autocheckpoint_pages(db) == AUTOCHECKPOINT_PAGES


def test_dispose_stops_the_checkpointer(db: Database):
    db.start_checkpointer(interval_s=0.05)
    thread = db._checkpointer

    db.dispose()

    assert thread is not None and not thread.is_alive()


def test_memory_database_has_no_checkpointer():
    database = Database("sqlite://")
    database.start_checkpointer(interval_s=0.05)
    try:
        assert database._checkpointer is None
    finally:
        database.dispose()
