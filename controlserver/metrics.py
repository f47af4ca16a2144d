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
# Children of the labelled metrics by label values: labels() validates its arguments and takes a
# lock on every call, which the registration storm showed as a visible cost.
_CHILDREN: dict[tuple, object] = {}


def child(metric, *label_values: str):
    """Return `metric.labels(*label_values)`, remembered for the next call with the same values."""
    key = (id(metric), *label_values)
    found = _CHILDREN.get(key)
    if found is None:
        found = _CHILDREN[key] = metric.labels(*label_values)
    return found


MONITOR_LEADER = Gauge(
    "fleet_monitor_leader", "1 while this process holds the monitor lease.", registry=REGISTRY,
)


class FleetCollector(Collector):
    """Printers per frontend and share state, each frontend's health, load and drain state, and the
    heartbeat and share figures that the alert rules in monitoring/alerts.yml use."""

    def __init__(self) -> None:
        self.read_counts: Callable | None = None
        self.read_printer_health: Callable | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.read_counts is None:
            return
        per_state, frontends, pooled = self.read_counts()

        printers = GaugeMetricFamily("fleet_printers", "Printers by assigned frontend and share state.",
                                     labels=["frontend", "share_state"])
        for frontend, share_state, count in per_state:
            printers.add_metric([frontend or "", share_state or "unknown"], count)
        yield printers

        labels = ["frontend", "region"]
        healthy = GaugeMetricFamily("fleet_frontend_healthy", "1 if the frontend passes its probes.", labels=labels)
        draining = GaugeMetricFamily("fleet_frontend_draining", "1 if the frontend is draining.", labels=labels)
        assigned = GaugeMetricFamily("fleet_frontend_assigned", "Printers assigned to the frontend.", labels=labels)
        capacity = GaugeMetricFamily("fleet_frontend_capacity", "Printers the frontend may carry; 0 once it left "
                                     "the inventory.", labels=labels)
        in_inventory = GaugeMetricFamily("fleet_frontend_in_inventory", "1 while the frontend is in the inventory.",
                                         labels=labels)
        for row in frontends:
            values = [row.name, row.region]
            healthy.add_metric(values, 1 if row.healthy else 0)
            draining.add_metric(values, 1 if row.draining else 0)
            assigned.add_metric(values, row.assigned)
            capacity.add_metric(values, row.capacity if row.in_inventory else 0)
            in_inventory.add_metric(values, 1 if row.in_inventory else 0)
        yield from (healthy, draining, assigned, capacity, in_inventory)

        pool = GaugeMetricFamily("fleet_zrok_account_pool", "Unclaimed zrok accounts made ahead of demand.",
                                 labels=["frontend"])
        for row in frontends:
            pool.add_metric([row.name], pooled.get(row.name, 0))
        yield pool

        if self.read_printer_health is not None:
            yield from self._printer_health(frontends)

    def _printer_health(self, frontends) -> Iterator[GaugeMetricFamily]:
        health = self.read_printer_health()
        yield GaugeMetricFamily("fleet_heartbeat_overdue_threshold_seconds",
                                "Seconds without a heartbeat after which a printer counts as overdue.",
                                value=health.overdue_after_s)
        overdue = GaugeMetricFamily("fleet_printers_heartbeat_overdue",
                                    "Printers assigned to the frontend whose heartbeat is overdue.",
                                    labels=["frontend", "region"])
        for row in frontends:
            overdue.add_metric([row.name, row.region], health.overdue.get(row.name, 0))
        yield overdue
        failing = GaugeMetricFamily("fleet_printer_share_failing",
                                    "1 for each printer whose share is failing: the agent reports it not active, "
                                    "or the last outside probe of its public URL failed. Printers with an overdue "
                                    "heartbeat are left out.", labels=["printer", "frontend", "region"])
        for printer_id, frontend, region in health.failing:
            failing.add_metric([printer_id, frontend, region], 1)
        yield failing

    def describe(self) -> list:
        return []


FLEET = FleetCollector()
REGISTRY.register(FLEET)
