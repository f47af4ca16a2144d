"""The gauges behind the alert rules, read from /metrics of the app in-process."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from controlserver.models import Printer, utcnow
from tests.controlserver.conftest import NEAR_EU, frontend_vars, write_inventory


def scrape(api) -> dict[tuple[str, frozenset], float]:
    samples = {}
    for family in text_string_to_metric_families(api.client.get("/metrics").text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def series(samples: dict, name: str) -> dict[frozenset, float]:
    return {labels: value for (sample_name, labels), value in samples.items() if sample_name == name}


def labels(**values: str) -> frozenset:
    return frozenset(values.items())


def set_printer(api, printer_id: str, **values) -> None:
    with api.app.state.fleet.db.write_session() as session:
        session.execute(update(Printer).where(Printer.id == printer_id).values(**values))


def enroll(api, *printer_ids: str) -> dict[str, str]:
    token = api.enrollment_token()
    return {p: api.register(token, p, **NEAR_EU).json()["printer_token"] for p in printer_ids}


def test_frontend_gauges_carry_region(api):
    enroll(api, "printer-0001")

    samples = scrape(api)

    assert samples[("fleet_frontend_assigned", labels(frontend="eu-1", region="eu"))] == 1
    assert samples[("fleet_frontend_capacity", labels(frontend="us-1", region="us"))] == 5
    assert samples[("fleet_frontend_healthy", labels(frontend="us-1", region="us"))] == 1
    assert samples[("fleet_frontend_draining", labels(frontend="eu-1", region="eu"))] == 0
    assert samples[("fleet_frontend_in_inventory", labels(frontend="eu-1", region="eu"))] == 1


def test_removed_frontend_leaves_inventory(api, fleet_files):
    write_inventory(fleet_files["inventory"], {
        "us-1": frontend_vars(fleet_files["zrok"]["us-1"], "us", "us-east-1", 5, "us.fleet.test"),
    })
    assert api.app.state.inventory.reload()

    samples = scrape(api)

    assert samples[("fleet_frontend_in_inventory", labels(frontend="eu-1", region="eu"))] == 0
    assert samples[("fleet_frontend_capacity", labels(frontend="eu-1", region="eu"))] == 0
    assert samples[("fleet_frontend_in_inventory", labels(frontend="us-1", region="us"))] == 1


def test_heartbeat_overdue_counted_per_frontend(make_api):
    api = make_api(heartbeat_interval_s=30)
    tokens = enroll(api, "printer-0001", "printer-0002", "printer-0003")
    for printer_id, token in tokens.items():
        api.heartbeat(token, printer_id, "eu-1")
    an_hour_ago = utcnow() - timedelta(hours=1)
    set_printer(api, "printer-0001", last_heartbeat_at=an_hour_ago)
    set_printer(api, "printer-0002", last_heartbeat_at=None, registered_at=an_hour_ago)

    samples = scrape(api)

    assert samples[("fleet_heartbeat_overdue_threshold_seconds", frozenset())] == 90
    assert series(samples, "fleet_printers_heartbeat_overdue") == {
        labels(frontend="eu-1", region="eu"): 2, labels(frontend="us-1", region="us"): 0}


def test_overdue_threshold_setting(make_api):
    api = make_api(heartbeat_overdue_s=600)
    enroll(api, "printer-0001")
    set_printer(api, "printer-0001", registered_at=utcnow() - timedelta(seconds=300))

    samples = scrape(api)

    assert samples[("fleet_heartbeat_overdue_threshold_seconds", frozenset())] == 600
    assert samples[("fleet_printers_heartbeat_overdue", labels(frontend="eu-1", region="eu"))] == 0


def test_share_failing_printers_listed(api):
    tokens = enroll(api, "printer-0001", "printer-0002", "printer-0003", "printer-0004", "printer-0005")
    api.heartbeat(tokens["printer-0001"], "printer-0001", "eu-1", share_state="failed")
    api.heartbeat(tokens["printer-0002"], "printer-0002", "eu-1", share_state="active")
    set_printer(api, "printer-0002", last_probe_error="HTTP 502")
    api.heartbeat(tokens["printer-0003"], "printer-0003", "eu-1", share_state="active")
    api.heartbeat(tokens["printer-0004"], "printer-0004", "eu-1", share_state="stopped")
    set_printer(api, "printer-0004", last_heartbeat_at=utcnow() - timedelta(hours=1))
    # printer-0005 never sent a heartbeat, so there is no share state to judge.

    failing = series(scrape(api), "fleet_printer_share_failing")

    assert failing == {
        labels(printer="printer-0001", frontend="eu-1", region="eu"): 1,
        labels(printer="printer-0002", frontend="eu-1", region="eu"): 1,
    }


def test_share_failing_clears_when_active(api):
    tokens = enroll(api, "printer-0001")
    api.heartbeat(tokens["printer-0001"], "printer-0001", "eu-1", share_state="starting")
    before = series(scrape(api), "fleet_printer_share_failing")

    api.heartbeat(tokens["printer-0001"], "printer-0001", "eu-1", share_state="active")

    assert list(before.values()) == [1]
    assert series(scrape(api), "fleet_printer_share_failing") == {}


@pytest.mark.postgres
def test_printer_gauges_on_postgres(make_api, postgres_url):
    api = make_api(database_url=postgres_url)
    tokens = enroll(api, "printer-0001", "printer-0002", "printer-0003")
    api.heartbeat(tokens["printer-0001"], "printer-0001", "eu-1", share_state="failed")
    api.heartbeat(tokens["printer-0002"], "printer-0002", "eu-1", share_state="failed")
    api.heartbeat(tokens["printer-0003"], "printer-0003", "eu-1", share_state="active")
    set_printer(api, "printer-0002", last_heartbeat_at=utcnow() - timedelta(hours=1))

    samples = scrape(api)

    assert series(samples, "fleet_printer_share_failing") == {
        labels(printer="printer-0001", frontend="eu-1", region="eu"): 1}
    assert samples[("fleet_printers_heartbeat_overdue", labels(frontend="eu-1", region="eu"))] == 1
