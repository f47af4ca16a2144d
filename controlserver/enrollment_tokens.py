"""`python -m controlserver enrollment-tokens`: list enrollment tokens and revoke them.

It works on the database directly, like `backup`, so it needs read and write access to it (run it
as the service user on the control-server host). The running server looks a token up on every
enrollment, so a revoked token is rejected from the next enrollment on, without a restart.
Printers that enrolled with a revoked token keep working: they use their own printer tokens.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from controlserver.database_option import add_database_option, database_url_missing
from controlserver.models import EnrollmentToken


class TokenCommandError(Exception):
    """An invalid request or a database failure; the message names the value and the fix."""


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the `enrollment-tokens` subcommand to the CLI's subparsers."""
    command = commands.add_parser(
        "enrollment-tokens", help="list enrollment tokens, or revoke them (works on the database directly)",
        description="List the enrollment tokens (id, description, expiry, uses) or revoke them. The "
                    "tokens themselves are not stored, only their hashes, so they cannot be shown.")
    add_database_option(command, "SQLAlchemy URL of the control server's database (FLEET_DATABASE_URL)")
    revoke = command.add_mutually_exclusive_group()
    revoke.add_argument("--revoke", type=int, action="append", metavar="ID", default=[],
                        help="revoke the token with this id (from the listing); may be given several times")
    revoke.add_argument("--revoke-all", action="store_true", help="revoke every enrollment token")
    command.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if database_url_missing(args):
        return 2
    try:
        database = _open(args.database_url)
        if args.revoke or args.revoke_all:
            count = revoke(database, None if args.revoke_all else args.revoke)
            print(f"revoked {count} enrollment tokens")
        else:
            print_tokens(list_tokens(database))
    except TokenCommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _open(database_url: str):
    from controlserver.core.db import Database

    try:
        url = make_url(database_url)
    except ArgumentError:
        raise TokenCommandError(f"--database {database_url!r} is not a valid SQLAlchemy URL: "
                                "use sqlite:////path/to/control.db or postgresql://user@host/db") from None
    # Opening a missing SQLite file would create an empty database.
    if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).is_file()):
        raise TokenCommandError(f"database file {url.database} not found: check --database")
    return Database(database_url)


def list_tokens(database) -> list[EnrollmentToken]:
    try:
        with database.read() as session:
            return list(session.scalars(select(EnrollmentToken).order_by(EnrollmentToken.id)))
    except SQLAlchemyError as exc:
        raise TokenCommandError(f"reading the enrollment tokens failed: {_first_line(exc)}") from None


def revoke(database, ids: list[int] | None) -> int:
    """Delete the tokens with these ids, or all tokens for None; raise for an unknown id, deleting nothing."""
    try:
        with database.write_session() as session:
            if ids is not None:
                known = set(session.scalars(select(EnrollmentToken.id).where(EnrollmentToken.id.in_(ids))))
                unknown = sorted(set(ids) - known)
                if unknown:
                    raise TokenCommandError(
                        f"no enrollment token with id {', '.join(map(str, unknown))}: "
                        "list the ids with `python -m controlserver enrollment-tokens`; nothing was revoked")
                return session.execute(delete(EnrollmentToken).where(EnrollmentToken.id.in_(ids))).rowcount
            return session.execute(delete(EnrollmentToken)).rowcount
    except SQLAlchemyError as exc:
        raise TokenCommandError(f"revoking enrollment tokens failed: {_first_line(exc)}") from None


def print_tokens(tokens: list[EnrollmentToken]) -> None:
    header = ("ID", "CREATED", "EXPIRES", "USES", "DESCRIPTION")
    rows = [header]
    for token in tokens:
        # The server counts uses only for tokens with a limit.
        uses = f"{token.uses}/{token.max_uses}" if token.max_uses is not None else "unlimited"
        expires = token.expires_at.strftime("%Y-%m-%d %H:%M") if token.expires_at else "never"
        rows.append((str(token.id), token.created_at.strftime("%Y-%m-%d %H:%M"), expires, uses, token.description))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
