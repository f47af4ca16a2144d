"""The SQLite writer: writes queued in one event loop iteration commit together, each in its own savepoint."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event, insert, select

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


def run_together(writer: GroupCommit, jobs: list) -> list:
    """Queue the jobs in one event loop iteration, as concurrent requests do, and return results or exceptions."""

    async def main():
        return await asyncio.gather(*(writer.run(function, *args) for function, *args in jobs),
                                    return_exceptions=True)

    return asyncio.run(main())


def test_queued_writes_commit_in_one_transaction(db: Database, commits: list[int]):
    results = run_together(GroupCommit(db), [(add_token, f"token-{n}") for n in range(5)])
    assert results == [f"token-{n}" for n in range(5)]
    assert stored(db) == {f"token-{n}" for n in range(5)}
    assert len(commits) == 1


def test_batches_limited_to_max_batch(db: Database, commits: list[int]):
    results = run_together(GroupCommit(db, max_batch=2), [(add_token, f"token-{n}") for n in range(5)])
    assert results == [f"token-{n}" for n in range(5)]
    assert len(commits) == 3


def test_failed_write_is_rolled_back_alone(db: Database):
    results = run_together(GroupCommit(db), [
        (add_token, "before"), (add_token_then_fail, "broken"), (add_token, "after"),
    ])
    assert results[0] == "before"
    assert isinstance(results[1], ValueError) and "broken failed after its insert" in str(results[1])
    assert results[2] == "after"
    assert stored(db) == {"before", "after"}


def test_failed_commit_fails_whole_batch(db: Database):
    def fail_commit(_connection) -> None:
        raise RuntimeError("disk full")

    writer = GroupCommit(db)
    event.listen(db.engine, "commit", fail_commit)
    results = run_together(writer, [(add_token, "lost-1"), (add_token_then_fail, "lost-2")])
    event.remove(db.engine, "commit", fail_commit)
    assert isinstance(results[0], RuntimeError) and "disk full" in str(results[0])
    # The write that failed by itself keeps its own error.
    assert isinstance(results[1], ValueError) and "lost-2 failed" in str(results[1])
    assert run_together(writer, [(add_token, "next")]) == ["next"]
    assert stored(db) == {"next"}


def test_cancelled_caller_writes_nothing(db: Database):
    writer = GroupCommit(db)

    async def main():
        cancelled = asyncio.ensure_future(writer.run(add_token, "cancelled"))
        other = asyncio.ensure_future(writer.run(add_token, "kept"))
        await asyncio.sleep(0)  # both are queued now; the batch runs in the next iteration
        cancelled.cancel()
        return await other

    assert asyncio.run(main()) == "kept"
    assert stored(db) == {"kept"}
