"""JSON bodies of the dashboard's data endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from controlserver.api.schemas import FrontendView

FrontendState = Literal["healthy", "unhealthy", "draining", "removed", "no_admin_secret"]


class FrontendPanel(FrontendView):
    """A frontend as GET /v1/frontends returns it, plus what the dashboard draws."""

    latitude: float
    longitude: float
    state: FrontendState = Field(description="the one state the dashboard shows, worst first")
    state_changed_at: datetime | None = Field(
        description="last change of health, drain state or inventory membership; null if unknown")


class Region(BaseModel):
    region: str
    capacity: int = Field(description="sum over the region's frontends in the inventory")
    assigned: int
    frontends: list[FrontendPanel]


class PrinterCluster(BaseModel):
    """Printers whose reported coordinates fall into one map cell, at their mean position."""

    latitude: float
    longitude: float
    count: int


class Totals(BaseModel):
    frontends: int
    capacity: int
    assigned: int
    printers: int
    unassigned: int = Field(description="printers without a frontend, e.g. after capacity ran out")


class FilterOptions(BaseModel):
    regions: list[str]
    frontends: list[str]
    share_states: list[str]
    klippy_states: list[str]


class Overview(BaseModel):
    generated_at: datetime
    totals: Totals
    regions: list[Region]
    printer_clusters: list[PrinterCluster]
    filters: FilterOptions
    last_event_id: int | None


class PrinterRow(BaseModel):
    printer_id: str
    frontend: str | None
    region: str | None = Field(description="region of the printer's frontend")
    share_state: str | None
    klippy_state: str | None
    moonraker_state: str | None
    reported_frontend: str | None
    last_heartbeat_at: datetime | None
    assigned_at: datetime | None
    move_reason: str | None
    agent_version: str | None
    probe_failures: int
    restart_share_pending: bool


class PrinterPage(BaseModel):
    printers: list[PrinterRow]
    total: int = Field(description="printers that match the filters, on all pages")
    next_after: str | None = Field(description="pass as `after` to get the next page; null on the last")


class Event(BaseModel):
    id: int
    created_at: datetime
    kind: str
    frontend: str | None
    from_frontend: str | None
    printer_id: str | None
    reason: str | None
    count: int | None
    detail: str | None


class EventList(BaseModel):
    events: list[Event]
