"""The SQLite writer: queued writes commit together, each in its own savepoint."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event, func, insert, select

from controlserver.core.db import Database, GroupCommit
from controlserver.models import EnrollmentToken, utcnow

TOKENS = EnrollmentToken.__table__


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'control.db'}")
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def commits(db: Database) -> list[int]:
    """Count the commits of write transactions."""
    counted: list[int] = []
    event.listen(db.engine, "commit", lambda _connection: counted.append(1))
    return counted


def add_token(connection, name: str) -> str:
    connection.execute(insert(TOKENS).values(token_hash=name, description=name, created_at=utcnow(), uses=0))
    return name


def add_token_then_fail(connection, name: str) -> str:
    add_token(connection, name)
    raise ValueError(f"{name} failed after its insert")


def stored(db: Database) -> set[str]:
    with db.read() as session:
        return set(session.scalars(select(TOKENS.c.token_hash)))


def queue_behind_blocker(writer: GroupCommit, jobs: list) -> list:
    """Hold the writer thread with one job while `jobs` queue, so that they form one batch."""
    release = threading.Event()
    started = threading.Event()

    def blocker(connection) -> None:
        started.set()
        release.wait()

    first = writer.submit(blocker)
    started.wait()
    futures = [writer.submit(function, *args) for function, *args in jobs]
    release.set()
    first.result()
    return futures


def test_queued_writes_commit_in_one_transaction(db: Database, commits: list[int]):
    writer = GroupCommit(db)
    try:
        futures = queue_behind_blocker(writer, [(add_token, f"token-{n}") for n in range(5)])
        assert [future.result() for future in futures] == [f"token-{n}" for n in range(5)]
    finally:
        writer.close()
    assert stored(db) == {f"token-{n}" for n in range(5)}
    assert len(commits) == 2  # the blocker's batch and the five queued writes


def test_failed_write_is_rolled_back_alone(db: Database):
    writer = GroupCommit(db)
    try:
        futures = queue_behind_blocker(writer, [
            (add_token, "before"), (add_token_then_fail, "broken"), (add_token, "after"),
        ])
        assert futures[0].result() == "before"
        with pytest.raises(ValueError, match="broken failed after its insert"):
            futures[1].result()
        assert futures[2].result() == "after"
    finally:
        writer.close()
    assert stored(db) == {"before", "after"}


def test_failed_commit_fails_whole_batch(db: Database):
    def fail_commit(_connection) -> None:
        raise RuntimeError("disk full")

    writer = GroupCommit(db)
    try:
        release = threading.Event()
        first = writer.submit(lambda connection: release.wait())
        futures = [writer.submit(add_token, "lost-1"), writer.submit(add_token_then_fail, "lost-2")]
        event.listen(db.engine, "commit", fail_commit)
        release.set()
        with pytest.raises(RuntimeError, match="disk full"):
            first.result()
        with pytest.raises(RuntimeError, match="disk full"):
            futures[0].result()
        with pytest.raises(ValueError, match="lost-2 failed"):
            futures[1].result()
        event.remove(db.engine, "commit", fail_commit)
        assert writer.submit(add_token, "next").result() == "next"
    finally:
        writer.close()
    assert stored(db) == {"next"}
