"""Warnings for an operator about a printer's public URL."""

from __future__ import annotations

from datetime import timedelta

from controlserver.models import Frontend, Printer, utcnow


def access_warnings(printer: Printer, frontend: Frontend | None, heartbeat_overdue_s: float) -> list[str]:
    """Return the reasons why the printer's public URL may fail right now, worst first."""
    if frontend is None:
        return ["the printer has no frontend, so it has no public URL: it gets one when it registers again"]
    warnings = []
    if not frontend.in_inventory:
        warnings.append(f"frontend {frontend.name} left the inventory; the printer will be moved")
    elif not frontend.healthy:
        warnings.append(f"frontend {frontend.name} is unhealthy; the printer will be moved")
    elif frontend.draining:
        warnings.append(f"frontend {frontend.name} is draining; the printer will be moved")

    last_seen = printer.last_heartbeat_at or printer.registered_at
    if utcnow() - last_seen > timedelta(seconds=heartbeat_overdue_s):
        warnings.append(f"no heartbeat since {last_seen.isoformat(timespec='seconds')}: the printer may be offline")
    if printer.reported_frontend is not None and printer.reported_frontend != printer.frontend:
        warnings.append(f"the agent still shares on {printer.reported_frontend}; it moves at its next heartbeat")
    if printer.share_state is not None and printer.share_state != "active":
        warnings.append(f"the agent reports its share as {printer.share_state}")
    if printer.last_probe_error:
        warnings.append(f"the last probe of the public URL failed: {printer.last_probe_error}")
    return warnings
