"""Read-only queries behind the dashboard: overview, filtered printers and the event list."""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from sqlalchemy import and_, func, select, true

from controlserver.api.schemas import HeartbeatRequest
from controlserver.dashboard import schemas
from controlserver.models import FleetEvent, Frontend, Printer, utcnow
from controlserver.services.fleet import Fleet

# Filter value for printers that have not reported the state yet (NULL in the database).
UNREPORTED = "unreported"
SHARE_STATES = [*get_args(HeartbeatRequest.model_fields["share_state"].annotation), UNREPORTED]
# Klippy states are free text from the agents; the filter offers at most this many distinct ones.
MAX_KLIPPY_STATES = 50
# The map counts printers per cell of this many degrees of latitude and longitude and draws each
# cell at its printers' mean position. Cells about as wide as the circles drawn keep the overview
# small (at most 36 x 72 cells) even for a fleet spread worldwide.
CLUSTER_DEGREES = 5


@dataclass(frozen=True)
class PrinterFilter:
    region: str | None = None
    frontend: str | None = None
    share_state: str | None = None
    klippy_state: str | None = None


def overview(fleet: Fleet) -> schemas.Overview:
    """Return the frontends grouped by region, the printers' positions and the filter options."""
    now = utcnow()
    # The numbers come from the same view as GET /v1/frontends, so both always agree.
    views = fleet.list_frontends().frontends
    with fleet.db.read() as session:
        places = {row.name: row for row in session.execute(
            select(Frontend.name, Frontend.latitude, Frontend.longitude, Frontend.state_changed_at))}
        cell_latitude = func.round(Printer.latitude / CLUSTER_DEGREES)
        cell_longitude = func.round(Printer.longitude / CLUSTER_DEGREES)
        clusters = session.execute(
            select(func.avg(Printer.latitude), func.avg(Printer.longitude), func.count())
            .where(Printer.latitude.is_not(None), Printer.longitude.is_not(None))
            .group_by(cell_latitude, cell_longitude)
        ).all()
        printers = session.scalar(select(func.count()).select_from(Printer))
        unassigned = session.scalar(select(func.count()).select_from(Printer).where(Printer.frontend.is_(None)))
        klippy_states = session.scalars(
            select(Printer.klippy_state).where(Printer.klippy_state.is_not(None)).distinct()
            .order_by(Printer.klippy_state).limit(MAX_KLIPPY_STATES)).all()
        last_event_id = session.scalar(select(func.max(FleetEvent.id)))

    panels = []
    for view in views:
        place = places.get(view.name)
        if place is None:
            # Added by an inventory reload between the two reads; the next refresh shows it.
            continue
        panels.append(schemas.FrontendPanel(
            **view.model_dump(), latitude=place.latitude, longitude=place.longitude,
            state=_state(view), state_changed_at=place.state_changed_at))

    return schemas.Overview(
        generated_at=now,
        totals=schemas.Totals(
            frontends=len(panels),
            capacity=sum(p.capacity for p in panels if p.in_inventory),
            assigned=sum(p.assigned for p in panels),
            printers=printers,
            unassigned=unassigned,
        ),
        regions=_regions(panels),
        printer_clusters=[schemas.PrinterCluster(latitude=round(lat, 2), longitude=round(lon, 2), count=count)
                          for lat, lon, count in clusters],
        filters=schemas.FilterOptions(
            regions=sorted({p.region for p in panels}),
            frontends=[p.name for p in panels],
            share_states=SHARE_STATES,
            klippy_states=[*klippy_states, UNREPORTED],
        ),
        last_event_id=last_event_id,
    )


def printers(fleet: Fleet, filters: PrinterFilter, limit: int, after: str | None) -> schemas.PrinterPage:
    """Return one page of the printers that match every given filter, ordered by id."""
    conditions = []
    if filters.region is not None:
        conditions.append(Frontend.region == filters.region)
    if filters.frontend is not None:
        conditions.append(Printer.frontend == filters.frontend)
    for column, value in ((Printer.share_state, filters.share_state), (Printer.klippy_state, filters.klippy_state)):
        if value == UNREPORTED:
            conditions.append(column.is_(None))
        elif value is not None:
            conditions.append(column == value)
    matching = and_(true(), *conditions)

    with fleet.db.read() as session:
        total = session.scalar(
            select(func.count()).select_from(Printer).outerjoin(Frontend, Printer.frontend == Frontend.name)
            .where(matching))
        query = (select(Printer, Frontend.region).outerjoin(Frontend, Printer.frontend == Frontend.name)
                 .where(matching))
        if after:
            query = query.where(Printer.id > after)
        rows = session.execute(query.order_by(Printer.id).limit(limit + 1)).all()

    page = rows[:limit]
    return schemas.PrinterPage(
        printers=[_printer_row(printer, region) for printer, region in page],
        total=total,
        next_after=page[-1][0].id if len(rows) > limit else None,
    )


def events(fleet: Fleet, after: int | None, limit: int) -> schemas.EventList:
    """Return the newest `limit` events, newest first; with `after`, the next `limit` events
    following that id, oldest first."""
    query = select(FleetEvent)
    if after is None:
        query = query.order_by(FleetEvent.id.desc())
    else:
        query = query.where(FleetEvent.id > after).order_by(FleetEvent.id)
    with fleet.db.read() as session:
        rows = session.scalars(query.limit(limit)).all()
    return schemas.EventList(events=[
        schemas.Event(id=row.id, created_at=row.created_at, kind=row.kind, frontend=row.frontend,
                      from_frontend=row.from_frontend, printer_id=row.printer_id, reason=row.reason,
                      count=row.count, detail=row.detail)
        for row in rows
    ])


def _state(view) -> str:
    if not view.in_inventory:
        return "removed"
    if not view.healthy:
        return "unhealthy"
    if view.draining:
        return "draining"
    if not view.zrok_admin_secret:
        return "no_admin_secret"
    return "healthy"


def _regions(panels: list[schemas.FrontendPanel]) -> list[schemas.Region]:
    by_region: dict[str, list[schemas.FrontendPanel]] = {}
    for panel in panels:
        by_region.setdefault(panel.region, []).append(panel)
    return [
        schemas.Region(
            region=region,
            capacity=sum(p.capacity for p in members if p.in_inventory),
            assigned=sum(p.assigned for p in members),
            frontends=members,
        )
        for region, members in sorted(by_region.items())
    ]


def _printer_row(printer: Printer, region: str | None) -> schemas.PrinterRow:
    return schemas.PrinterRow(
        printer_id=printer.id, frontend=printer.frontend, region=region, share_state=printer.share_state,
        klippy_state=printer.klippy_state, moonraker_state=printer.moonraker_state,
        reported_frontend=printer.reported_frontend, last_heartbeat_at=printer.last_heartbeat_at,
        assigned_at=printer.assigned_at, move_reason=printer.move_reason, agent_version=printer.agent_version,
        probe_failures=printer.probe_failures, restart_share_pending=printer.restart_share,
    )
