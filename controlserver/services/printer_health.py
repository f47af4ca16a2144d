"""Per-frontend heartbeat and share figures for /metrics, from which the alert rules work.

A printer's heartbeat is overdue when neither a heartbeat nor, for a printer that never sent one,
its registration is more recent than the overdue threshold. A printer's share is failing when its
heartbeat is not overdue and either the agent reports a share state other than `active` or the
last outside probe of its public URL failed. An overdue printer is left out of the failing ones:
it is most likely switched off, which the heartbeat figures already show.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, or_, select

from controlserver.core.db import Database
from controlserver.models import Frontend, Printer, utcnow


@dataclass
class PrinterHealth:
    overdue_after_s: float
    # frontend name -> printers assigned to it whose heartbeat is overdue
    overdue: dict[str, int]
    # (printer id, frontend, region) of each printer whose share is failing
    failing: list[tuple[str, str, str]]


def read_printer_health(db: Database, overdue_after_s: float) -> PrinterHealth:
    cutoff = utcnow() - timedelta(seconds=overdue_after_s)
    last_seen = func.coalesce(Printer.last_heartbeat_at, Printer.registered_at)
    with db.read() as session:
        overdue = dict(session.execute(
            select(Printer.frontend, func.count())
            .where(Printer.frontend.is_not(None), last_seen < cutoff)
            .group_by(Printer.frontend)
        ).all())
        # NOTE: /metrics gets one series per failing printer. A region-wide outage makes as many
        # series as the region has printers, so dashboards should aggregate them.
        failing = session.execute(
            select(Printer.id, Printer.frontend, Frontend.region)
            .join(Frontend, Printer.frontend == Frontend.name)
            .where(last_seen >= cutoff, Printer.share_state.is_not(None),
                   or_(Printer.share_state != "active", Printer.last_probe_error.is_not(None)))
            .order_by(Printer.id)
        ).all()
    return PrinterHealth(overdue_after_s, overdue, [tuple(row) for row in failing])
