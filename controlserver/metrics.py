"""Prometheus metrics. Fleet gauges are read from the database at scrape time, so every replica
reports the same figures."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

disable_created_metrics()
REGISTRY = CollectorRegistry(auto_describe=True)

REQUEST_DURATION = Histogram(
    "fleet_http_request_duration_seconds", "HTTP request latency by route and status.",
    ["method", "route", "status"], registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ASSIGNMENTS = Counter(
    "fleet_assignments_total", "Printers assigned to a frontend, by reason (new, unhealthy, draining, removed).",
    ["frontend", "reason"], registry=REGISTRY,
)
MOVES = Counter(
    "fleet_moves_total", "Printers moved away from a frontend (failovers and drains), by reason.",
    ["from_frontend", "reason"], registry=REGISTRY,
)
HEARTBEAT_ACTIONS = Counter(
    "fleet_heartbeat_actions_total", "Heartbeat answers by action.", ["action"], registry=REGISTRY,
)
ZROK_ACCOUNTS = Counter(
    "fleet_zrok_accounts_created_total", "zrok accounts created through the admin API.",
    ["frontend"], registry=REGISTRY,
)
ZROK_ACCOUNT_FAILURES = Counter(
    "fleet_zrok_account_failures_total", "Failed zrok account creations.", ["frontend"], registry=REGISTRY,
)
FRONTEND_PROBES = Counter(
    "fleet_frontend_probes_total", "Frontend probes by result.", ["frontend", "result"], registry=REGISTRY,
)
PRINTER_PROBE_FAILURES = Counter(
    "fleet_printer_probe_failures_total", "Failed probes of printers' public URLs.", registry=REGISTRY,
)
HEALTH_TRANSITIONS = Counter(
    "fleet_frontend_health_transitions_total", "Frontends marked healthy or unhealthy.",
    ["frontend", "to"], registry=REGISTRY,
)
INVENTORY_RELOADS = Counter(
    "fleet_inventory_reloads_total", "Inventory reloads by result (ok, rejected).", ["result"], registry=REGISTRY,
)
PRINTER_ACCESS = Counter(
    "fleet_printer_access_total", "Printer credentials handed out through /access, by the caller's role.",
    ["role"], registry=REGISTRY,
)
MONITOR_LEADER = Gauge(
    "fleet_monitor_leader", "1 while this process holds the monitor lease.", registry=REGISTRY,
)


class FleetCollector(Collector):
    """Printers per frontend and share state, and each frontend's health, load and drain state."""

    def __init__(self) -> None:
        self.read_counts: Callable | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.read_counts is None:
            return
        per_state, frontends, pooled = self.read_counts()

        printers = GaugeMetricFamily("fleet_printers", "Printers by assigned frontend and share state.",
                                     labels=["frontend", "share_state"])
        for frontend, share_state, count in per_state:
            printers.add_metric([frontend or "", share_state or "unknown"], count)
        yield printers

        healthy = GaugeMetricFamily("fleet_frontend_healthy", "1 if the frontend passes its probes.", labels=["frontend"])
        draining = GaugeMetricFamily("fleet_frontend_draining", "1 if the frontend is draining.", labels=["frontend"])
        assigned = GaugeMetricFamily("fleet_frontend_assigned", "Printers assigned to the frontend.", labels=["frontend"])
        capacity = GaugeMetricFamily("fleet_frontend_capacity", "Printers the frontend may carry.", labels=["frontend"])
        for row in frontends:
            healthy.add_metric([row.name], 1 if row.healthy else 0)
            draining.add_metric([row.name], 1 if row.draining else 0)
            assigned.add_metric([row.name], row.assigned)
            capacity.add_metric([row.name], row.capacity if row.in_inventory else 0)
        yield from (healthy, draining, assigned, capacity)

        pool = GaugeMetricFamily("fleet_zrok_account_pool", "Unclaimed zrok accounts made ahead of demand.",
                                 labels=["frontend"])
        for row in frontends:
            pool.add_metric([row.name], pooled.get(row.name, 0))
        yield pool

    def describe(self) -> list:
        return []


FLEET = FleetCollector()
REGISTRY.register(FLEET)
