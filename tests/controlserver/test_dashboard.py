"""The dashboard in-process: login, session cookie, data endpoints, event list, migration, wheel.

The browser tests against a real server process are in test_dashboard_browser.py.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from datetime import UTC, datetime

import jinja2
import pytest
import yaml
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from pydantic import ValidationError
from sqlalchemy import create_engine

from controlserver.core.db import MIGRATIONS_DIR, Database
from controlserver.core.security import hash_token
from controlserver.core.settings import Settings
from controlserver.models import Base
from controlserver.services import events
from controlserver.services.monitor import Monitor
from tests.controlserver.conftest import ADMIN_TOKEN, NEAR_EU, NEAR_US, REPO, ServerProcess

DATA_PATHS = ["/dashboard/api/overview", "/dashboard/api/printers", "/dashboard/api/events"]
SESSION_SECRET = "dashboard-session-secret-7d41c9e0b2a8"
OTHER_ADMIN_TOKEN = "other-admin-token-93b1f07c5e2d4a68"


def login(client, token: str = ADMIN_TOKEN):
    return client.post("/dashboard/login", data={"token": token}, follow_redirects=False)


def get_json(client, path: str, **params) -> dict:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def session_cookie(response) -> str:
    match = re.search(r"fleet_dashboard=([^;]+)", response.headers.get("set-cookie", ""))
    assert match, response.headers
    return match.group(1)


def overview_frontends(client) -> dict[str, dict]:
    overview = get_json(client, "/dashboard/api/overview")
    return {f["name"]: f for region in overview["regions"] for f in region["frontends"]}


def newest_events(client, limit: int = 100) -> list[dict]:
    return get_json(client, "/dashboard/api/events", limit=limit)["events"]


def enroll(api, count: int, placement: dict, prefix: str) -> dict[str, dict]:
    token = api.enrollment_token()
    registered = {}
    for number in range(count):
        printer_id = f"{prefix}-{number:02d}"
        response = api.register(token, printer_id, **placement)
        assert response.status_code == 200, response.text
        registered[printer_id] = response.json()
    return registered


# -- login and session ---------------------------------------------------------------------------

def test_page_redirects_to_login(api):
    response = api.client.get("/dashboard/", follow_redirects=False)

    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/login"
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize("path", DATA_PATHS)
def test_data_requires_login(api, path):
    response = api.client.get(path)

    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert "log in at /dashboard/login" in response.json()["message"]
    assert response.headers["www-authenticate"] == "Bearer"


def test_login_page_served_without_session(api):
    response = api.client.get("/dashboard/login")

    assert response.status_code == 200
    assert '<input id="token" name="token" type="password"' in response.text
    assert "eu-1" not in response.text
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"


def test_static_assets_carry_no_fleet_data(api):
    enroll(api, 2, NEAR_EU, "eu")
    for asset, media_type in (("dashboard.js", "javascript"), ("dashboard.css", "text/css"),
                              ("world.svg", "image/svg+xml")):
        response = api.client.get(f"/dashboard/static/{asset}")
        assert response.status_code == 200
        assert media_type in response.headers["content-type"]
        assert "eu-1" not in response.text
        assert "eu-00" not in response.text


def test_page_loads_nothing_from_other_hosts(api):
    login(api.client)
    texts = [api.client.get("/dashboard/").text, api.client.get("/dashboard/login").text]
    texts += [api.client.get(f"/dashboard/static/{asset}").text
              for asset in ("dashboard.js", "dashboard.css", "world.svg")]

    for text in texts:
        urls = set(re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s\"')]*", text))
        assert urls <= {"http://www.w3.org/2000/svg"}


@pytest.mark.parametrize("token,status,message", [
    ("not-the-admin-token-0000000000", 401, "That is not the admin token"),
    ("", 400, "Enter the admin token"),
    ("   ", 400, "Enter the admin token"),
])
def test_login_rejects_wrong_token(api, token, status, message):
    response = login(api.client, token)

    assert response.status_code == status
    assert message in response.text
    assert "set-cookie" not in response.headers
    assert api.client.get("/dashboard/api/overview").status_code == 401


def test_login_rejects_oversized_token(api):
    response = login(api.client, "x" * 5000)

    assert response.status_code == 422
    assert "token" in response.json()["message"]


def test_login_sets_session_cookie(api):
    response = login(api.client)

    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/"
    flags = [flag.strip().lower() for flag in response.headers["set-cookie"].split(";")[1:]]
    assert "httponly" in flags
    assert "samesite=strict" in flags
    assert "path=/dashboard" in flags
    assert "secure" not in flags
    assert "max-age=28800" in flags
    payload = base64.b64decode(session_cookie(response).split(".")[0] + "==").decode()
    assert ADMIN_TOKEN not in payload
    assert hash_token(ADMIN_TOKEN) not in payload

    page = api.client.get("/dashboard/")
    assert page.status_code == 200
    assert 'id="regions"' in page.text
    assert api.client.get("/dashboard/login", follow_redirects=False).headers["location"] == "/dashboard/"
    for path in DATA_PATHS:
        assert api.client.get(path).status_code == 200


def test_session_cookie_secure_with_tls(make_api, fleet_files):
    api = make_api(tls_cert=fleet_files["tmp"] / "server.pem", tls_key=fleet_files["tmp"] / "server.key")

    response = login(api.client)

    flags = [flag.strip().lower() for flag in response.headers["set-cookie"].split(";")[1:]]
    assert "secure" in flags


def test_forged_session_cookie_rejected(api):
    payload = base64.b64encode(json.dumps({"admin": "0" * 64, "csrf": "x"}).encode()).decode()
    api.client.cookies.set("fleet_dashboard", f"{payload}.forged.signature", path="/dashboard")

    assert api.client.get("/dashboard/api/overview").status_code == 401
    assert api.client.get("/dashboard/", follow_redirects=False).status_code == 303


def test_bearer_token_reads_data(api):
    for path in DATA_PATHS:
        assert api.client.get(path, headers=api.admin).status_code == 200
    assert api.client.get("/dashboard/", headers=api.admin).status_code == 200


def test_wrong_bearer_rejected_despite_session(api):
    login(api.client)

    response = api.client.get("/dashboard/api/overview",
                              headers={"Authorization": "Bearer not-the-admin-token-0000000000"})

    assert response.status_code == 401


def test_logout_needs_csrf_token(api):
    login(api.client)
    page = api.client.get("/dashboard/").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)

    forged = api.client.post("/dashboard/logout", data={"csrf": "not-the-csrf-token"}, follow_redirects=False)
    still_in = api.client.get("/dashboard/api/overview").status_code
    logout = api.client.post("/dashboard/logout", data={"csrf": csrf}, follow_redirects=False)

    assert forged.status_code == 403
    assert still_in == 200
    assert logout.status_code == 303
    assert logout.headers["location"] == "/dashboard/login"
    assert "fleet_dashboard=null" in logout.headers["set-cookie"]
    assert api.client.get("/dashboard/api/overview").status_code == 401


def test_logout_only_by_post(api):
    login(api.client)

    assert api.client.get("/dashboard/logout").status_code == 405
    assert api.client.get("/dashboard/api/overview").status_code == 200


def test_session_survives_restart_with_secret(make_api):
    first = make_api(session_secret=SESSION_SECRET)
    cookie = session_cookie(login(first.client))
    restarted = make_api(session_secret=SESSION_SECRET)
    restarted.client.cookies.set("fleet_dashboard", cookie, path="/dashboard")

    assert restarted.client.get("/dashboard/api/overview").status_code == 200


def test_session_ends_with_new_admin_token(make_api):
    first = make_api(session_secret=SESSION_SECRET)
    cookie = session_cookie(login(first.client))
    rotated = make_api(session_secret=SESSION_SECRET, admin_token=OTHER_ADMIN_TOKEN)
    rotated.client.cookies.set("fleet_dashboard", cookie, path="/dashboard")

    assert rotated.client.get("/dashboard/api/overview").status_code == 401


def test_session_ends_without_secret_at_restart(make_api):
    first = make_api()
    cookie = session_cookie(login(first.client))
    restarted = make_api()
    restarted.client.cookies.set("fleet_dashboard", cookie, path="/dashboard")

    assert restarted.client.get("/dashboard/api/overview").status_code == 401


@pytest.mark.parametrize("secret,message", [
    ("changeme", "FLEET_SESSION_SECRET is a placeholder"),
    ("short-secret", "FLEET_SESSION_SECRET is shorter than 16 characters"),
])
def test_session_secret_rejects_placeholder(fleet_files, secret, message):
    with pytest.raises(ValidationError) as error:
        Settings(inventory=fleet_files["inventory"], admin_token=ADMIN_TOKEN, session_secret=secret)

    assert message in error.value.errors()[0]["msg"]
    assert secret not in error.value.errors()[0]["msg"]


def test_serve_rejects_placeholder_session_secret(fleet_files):
    server = ServerProcess(fleet_files, env={"FLEET_SESSION_SECRET": "changeme"})

    result = subprocess.run(server.command(), env=server.env, capture_output=True, text=True, timeout=60)

    assert result.returncode == 2
    assert "session_secret: FLEET_SESSION_SECRET is a placeholder value" in result.stderr
    assert "changeme" not in result.stderr


# -- overview ------------------------------------------------------------------------------------

def test_overview_matches_frontends_api(api):
    enroll(api, 3, NEAR_EU, "eu")
    enroll(api, 2, NEAR_US, "us")
    api.client.post("/v1/frontends/us-1/drain", headers=api.admin)
    login(api.client)

    overview = get_json(api.client, "/dashboard/api/overview")
    panels = {f["name"]: f for region in overview["regions"] for f in region["frontends"]}
    frontends = api.frontends()

    assert [region["region"] for region in overview["regions"]] == ["eu", "us"]
    for name, frontend in frontends.items():
        for field in ("assigned", "capacity", "load", "healthy", "draining", "in_inventory", "region", "location"):
            assert panels[name][field] == frontend[field], (name, field)
    assert panels["eu-1"]["state"] == "healthy"
    assert panels["us-1"]["state"] == "draining"
    assert (panels["eu-1"]["latitude"], panels["eu-1"]["longitude"]) == (50.5, 12.4)
    assert overview["totals"] == {"frontends": 2, "capacity": 10, "assigned": 5, "printers": 5, "unassigned": 0}
    assert {(c["latitude"], c["longitude"]): c["count"] for c in overview["printer_clusters"]} == {
        (50.1, 8.7): 3, (40.7, -74.0): 2}
    assert overview["filters"]["frontends"] == ["eu-1", "us-1"]
    assert overview["filters"]["regions"] == ["eu", "us"]
    assert "unreported" in overview["filters"]["share_states"]


def test_overview_shows_removed_frontend(api, fleet_files):
    enroll(api, 1, NEAR_US, "us")
    inventory = fleet_files["inventory"]
    text = inventory.read_text()
    start = text.index("us-1:")
    inventory.write_text(text[:start].rstrip() + "\n")

    assert api.app.state.inventory.reload()
    login(api.client)
    panels = overview_frontends(api.client)
    kinds = [(e["kind"], e["frontend"], e["count"]) for e in newest_events(api.client)]

    assert panels["us-1"]["state"] == "removed"
    assert kinds[0] == ("removed", "us-1", 1)


# -- state changes and events --------------------------------------------------------------------

def test_drain_records_event_and_state_time(api):
    enroll(api, 3, NEAR_EU, "eu")
    login(api.client)
    added_at = datetime.fromisoformat(overview_frontends(api.client)["eu-1"]["state_changed_at"])

    api.client.post("/v1/frontends/eu-1/drain", headers=api.admin)
    api.client.post("/v1/frontends/eu-1/drain", headers=api.admin)
    drained = overview_frontends(api.client)["eu-1"]
    moved = api.app.state.fleet.move_batch()
    api.client.post("/v1/frontends/eu-1/undrain", headers=api.admin)
    listed = newest_events(api.client)

    assert drained["state"] == "draining"
    assert datetime.fromisoformat(drained["state_changed_at"]) > added_at
    assert moved == 3
    kinds = [e["kind"] for e in listed]
    assert kinds[:5] == ["undrain", "move", "move", "move", "drain"]
    assert kinds.count("drain") == 1
    drain = listed[4]
    assert (drain["frontend"], drain["count"]) == ("eu-1", 3)
    moves = listed[1:4]
    assert {m["printer_id"] for m in moves} == {"eu-00", "eu-01", "eu-02"}
    assert {(m["from_frontend"], m["frontend"], m["reason"]) for m in moves} == {("eu-1", "us-1", "draining")}
    assert [e["id"] for e in listed] == sorted((e["id"] for e in listed), reverse=True)


def test_heartbeat_move_records_event(api):
    registered = enroll(api, 1, NEAR_EU, "eu")
    api.client.post("/v1/frontends/eu-1/drain", headers=api.admin)
    login(api.client)

    response = api.register(registered["eu-00"]["printer_token"], "eu-00")

    assert response.json()["assignment"]["frontend"] == "us-1"
    move = newest_events(api.client)[0]
    assert (move["kind"], move["printer_id"], move["from_frontend"], move["frontend"]) == (
        "move", "eu-00", "eu-1", "us-1")


def test_failover_records_health_events(api):
    enroll(api, 2, NEAR_EU, "eu")
    login(api.client)
    monitor = Monitor(api.app.state.fleet)
    failed_probe = "GET http://127.0.0.1:9/healthz: HTTP 502"

    for _ in range(3):
        monitor._record_frontend_results({"eu-1": failed_probe, "us-1": None})
    failed = newest_events(api.client)[0]
    unhealthy_panel = overview_frontends(api.client)["eu-1"]
    for _ in range(2):
        monitor._record_frontend_results({"eu-1": None, "us-1": None})
    recovered = newest_events(api.client)[0]

    assert (failed["kind"], failed["frontend"], failed["count"]) == ("unhealthy", "eu-1", 2)
    assert failed["detail"] == failed_probe
    assert unhealthy_panel["state"] == "unhealthy"
    assert unhealthy_panel["last_probe_error"] == failed_probe
    assert unhealthy_panel["state_changed_at"] == failed["created_at"]
    assert (recovered["kind"], recovered["frontend"]) == ("healthy", "eu-1")


def test_events_continue_after_id(api):
    login(api.client)
    for _ in range(3):
        api.client.post("/v1/frontends/eu-1/drain", headers=api.admin)
        api.client.post("/v1/frontends/eu-1/undrain", headers=api.admin)
    newest = newest_events(api.client)

    following = get_json(api.client, "/dashboard/api/events", after=newest[3]["id"], limit=2)["events"]

    assert [e["id"] for e in following] == [newest[2]["id"], newest[1]["id"]]


@pytest.mark.parametrize("params,field", [
    ({"after": -1}, "after"), ({"limit": 0}, "limit"), ({"limit": 501}, "limit"), ({"after": "x"}, "after"),
])
def test_events_reject_bad_query(api, params, field):
    response = api.client.get("/dashboard/api/events", params=params, headers=api.admin)

    assert response.status_code == 422
    assert f"query.{field}" in response.json()["message"]


def test_prune_keeps_newest_events(fleet_files):
    database = Database(f"sqlite:///{fleet_files['database']}")
    database.migrate()
    with database.write() as connection:
        for number in range(10):
            events.record_frontend(connection, events.DRAIN, f"frontend-{number}", count=number)

    with database.write() as connection:
        deleted = events.prune(connection, keep=4)
        again = events.prune(connection, keep=4)
    with sqlite3.connect(fleet_files["database"]) as connection:
        left = [row[0] for row in connection.execute("SELECT frontend FROM fleet_events ORDER BY id")]
    database.dispose()

    assert deleted == 6
    assert again == 0
    assert left == ["frontend-6", "frontend-7", "frontend-8", "frontend-9"]


def test_record_frontend_rejects_move_kind(fleet_files):
    with pytest.raises(ValueError, match="not a frontend event"):
        events.record_frontend(None, events.MOVE, "eu-1")


# -- printers ------------------------------------------------------------------------------------

@pytest.fixture
def printer_fleet(api):
    """Five printers: three on eu-1 and two on us-1, with different share and Klippy states."""
    eu = enroll(api, 3, NEAR_EU, "eu")
    us = enroll(api, 2, NEAR_US, "us")
    states = {"eu-00": ("active", "ready"), "eu-01": ("failed", "shutdown"), "us-00": ("active", "startup"),
              "us-01": ("stopped", "ready")}
    for printer_id, (share_state, klippy_state) in states.items():
        registered = {**eu, **us}[printer_id]
        response = api.heartbeat(registered["printer_token"], printer_id, registered["assignment"]["frontend"],
                                 share_state=share_state, klippy_state=klippy_state)
        assert response.status_code == 200, response.text
    login(api.client)
    return api


def printer_ids(api, **filters) -> list[str]:
    page = get_json(api.client, "/dashboard/api/printers", **filters)
    ids = [p["printer_id"] for p in page["printers"]]
    assert page["total"] >= len(ids)
    return ids


@pytest.mark.parametrize("filters,expected", [
    ({}, ["eu-00", "eu-01", "eu-02", "us-00", "us-01"]),
    ({"region": "eu"}, ["eu-00", "eu-01", "eu-02"]),
    ({"frontend": "us-1"}, ["us-00", "us-01"]),
    ({"share_state": "active"}, ["eu-00", "us-00"]),
    ({"share_state": "unreported"}, ["eu-02"]),
    ({"klippy_state": "ready"}, ["eu-00", "us-01"]),
    ({"klippy_state": "unreported"}, ["eu-02"]),
    ({"region": "us", "klippy_state": "ready"}, ["us-01"]),
    ({"frontend": "eu-1", "share_state": "failed", "klippy_state": "shutdown"}, ["eu-01"]),
    ({"frontend": "nowhere-1"}, []),
    ({"region": "", "frontend": ""}, ["eu-00", "eu-01", "eu-02", "us-00", "us-01"]),
])
def test_printers_filtered(printer_fleet, filters, expected):
    assert printer_ids(printer_fleet, **filters) == expected


def test_printers_show_reported_state(printer_fleet):
    page = get_json(printer_fleet.client, "/dashboard/api/printers", frontend="eu-1", share_state="failed")

    assert page["total"] == 1
    printer = page["printers"][0]
    assert printer["printer_id"] == "eu-01"
    assert printer["region"] == "eu"
    assert printer["klippy_state"] == "shutdown"
    assert printer["moonraker_state"] == "ok"
    assert printer["last_heartbeat_at"] is not None
    assert "share_password" not in printer
    assert "moonraker_api_key" not in printer


def test_printers_paginate(printer_fleet):
    first = get_json(printer_fleet.client, "/dashboard/api/printers", limit=2)
    second = get_json(printer_fleet.client, "/dashboard/api/printers", limit=2, after=first["next_after"])
    last = get_json(printer_fleet.client, "/dashboard/api/printers", limit=2, after=second["next_after"])

    assert [p["printer_id"] for p in first["printers"]] == ["eu-00", "eu-01"]
    assert [p["printer_id"] for p in second["printers"]] == ["eu-02", "us-00"]
    assert [p["printer_id"] for p in last["printers"]] == ["us-01"]
    assert last["next_after"] is None
    assert first["total"] == second["total"] == 5


def test_overview_lists_klippy_states(printer_fleet):
    overview = get_json(printer_fleet.client, "/dashboard/api/overview")

    assert overview["filters"]["klippy_states"] == ["ready", "shutdown", "startup", "unreported"]


@pytest.mark.parametrize("params,field", [
    ({"share_state": "broken"}, "share_state"),
    ({"klippy_state": "k" * 33}, "klippy_state"),
    ({"region": "r" * 129}, "region"),
    ({"limit": 0}, "limit"),
    ({"limit": 501}, "limit"),
    ({"after": "Not A Printer"}, "after"),
])
def test_printers_reject_bad_filter(api, params, field):
    response = api.client.get("/dashboard/api/printers", params=params, headers=api.admin)

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_request"
    assert f"query.{field}" in body["message"]


# -- schema and packaging ------------------------------------------------------------------------

def test_migrations_match_models(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'schema.db'}")
    database.migrate()

    with database.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    database.dispose()

    assert differences == []


def test_migration_backfills_state_change_time(tmp_path):
    url = f"sqlite:///{tmp_path / 'upgrade.db'}"
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    engine = create_engine(url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
    changed = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    with sqlite3.connect(tmp_path / "upgrade.db") as connection:
        for name, health_changed_at in (("eu-1", changed.isoformat(" ")), ("us-1", None)):
            connection.execute(
                "INSERT INTO frontends (name, region, location, latitude, longitude, capacity, api_endpoint, "
                "share_domain, health_url, in_inventory, healthy, draining, assigned, consecutive_failures, "
                "consecutive_successes, health_changed_at) VALUES (?, 'eu', 'fsn1', 50.5, 12.4, 5, ?, ?, ?, 1, 1, 0, "
                "0, 0, 0, ?)", (name, f"https://{name}.test", f"{name}.test", f"http://{name}/healthz",
                                health_changed_at))
    engine.dispose()

    database = Database(url)
    database.migrate()
    with sqlite3.connect(tmp_path / "upgrade.db") as connection:
        rows = dict(connection.execute("SELECT name, state_changed_at FROM frontends"))
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    database.dispose()

    assert rows["eu-1"] == changed.isoformat(" ")
    assert rows["us-1"] is None
    assert "fleet_events" in tables


def test_wheel_ships_dashboard_files(tmp_path):
    """Build the control server wheel as playbooks/control_server.yml does and look inside."""
    source = tmp_path / "src"
    shutil.copytree(REPO / "controlserver", source / "controlserver", ignore=shutil.ignore_patterns("__pycache__"))
    template = (REPO / "playbooks/templates/control_server/pyproject.toml.j2").read_text()
    (source / "pyproject.toml").write_text(jinja2.Template(template).render(
        ansible_managed="test build", _control_server_version="0.1.0"))

    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "--disable-pip-version-check", "--quiet", "--wheel-dir", str(tmp_path / "wheels"),
                            str(source)], capture_output=True, text=True, timeout=300)

    assert build.returncode == 0, build.stderr
    wheel = next((tmp_path / "wheels").glob("printer_fleet_controlserver-0.1.0-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in ("dashboard/static/dashboard.js", "dashboard/static/dashboard.css", "dashboard/static/world.svg",
                 "dashboard/templates/base.html", "dashboard/templates/login.html",
                 "dashboard/templates/dashboard.html",
                 "migrations/versions/0003_add_fleet_events_and_state_changes.py"):
        assert f"controlserver/{path}" in names
