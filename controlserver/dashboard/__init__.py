"""Fleet dashboard: frontends by region with their load, printers, a map and the event list.

A page behind admin login that the control server serves at /dashboard/, with its data
endpoints under /dashboard/api/ and its scripts, styles and world outline under
/dashboard/static/ (nothing is loaded from other hosts, so it works offline).
"""

from controlserver.dashboard.app import DASHBOARD_PATH, create_dashboard

__all__ = ["DASHBOARD_PATH", "create_dashboard"]
