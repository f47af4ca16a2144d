"""The fleet event list: printer moves and frontend state changes, newest last.

Events are rows of `fleet_events`, written in the same transaction as the change they describe,
so every replica's dashboard shows every replica's changes, and a rolled-back change leaves no
event. The monitor prunes the list to the newest MAX_EVENTS rows.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, insert, select

from controlserver.models import FleetEvent, utcnow

EVENTS = FleetEvent.__table__

# A printer moved from one frontend to another (reason: unhealthy, draining, removed).
MOVE = "move"
# A frontend's health changed after consecutive probes.
UNHEALTHY = "unhealthy"
HEALTHY = "healthy"
# An operator drained or undrained a frontend.
DRAIN = "drain"
UNDRAIN = "undrain"
# A frontend appeared in, left or came back to the inventory.
ADDED = "added"
REMOVED = "removed"
RETURNED = "returned"
EVENT_KINDS = (MOVE, UNHEALTHY, HEALTHY, DRAIN, UNDRAIN, ADDED, REMOVED, RETURNED)

# About a week of a busy fleet's changes at a few thousand moves a day, and a few MB of rows.
MAX_EVENTS = 20_000
DETAIL_LENGTH = 300

INSERT_EVENT = insert(EVENTS)


def record_move(connection, printer_id: str, from_frontend: str, to_frontend: str, reason: str,
                now: datetime) -> None:
    """Store that a printer moved; `connection` is the transaction that moved it."""
    connection.execute(INSERT_EVENT, {
        "created_at": now, "kind": MOVE, "printer_id": printer_id, "from_frontend": from_frontend,
        "frontend": to_frontend, "reason": reason, "count": None, "detail": None,
    })


def record_frontend(connection, kind: str, frontend: str, count: int | None = None, detail: str | None = None,
                    now: datetime | None = None) -> None:
    """Store a frontend state change; `connection` is a Connection or Session in its transaction."""
    if kind not in EVENT_KINDS or kind == MOVE:
        raise ValueError(f"event kind {kind!r} is not a frontend event: use one of {EVENT_KINDS[1:]}")
    connection.execute(INSERT_EVENT, {
        "created_at": now or utcnow(), "kind": kind, "printer_id": None, "from_frontend": None,
        "frontend": frontend, "reason": None, "count": count,
        "detail": detail[:DETAIL_LENGTH] if detail else None,
    })


def prune(connection, keep: int = MAX_EVENTS) -> int:
    """Delete all but the newest `keep` events; return how many were deleted."""
    newest = connection.execute(select(func.max(EVENTS.c.id))).scalar()
    if newest is None or newest <= keep:
        return 0
    return connection.execute(delete(EVENTS).where(EVENTS.c.id <= newest - keep)).rowcount
