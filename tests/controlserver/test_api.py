"""The REST API in-process against real SQLite and PostgreSQL databases and fake zrok
controllers on loopback."""

from __future__ import annotations

import asyncio

import pytest

from tests.controlserver.conftest import NEAR_EU, NEAR_US, run_sql

DATABASE_ENGINES = ("sqlite", "postgresql")

ASSIGNMENT_FIELDS = {"frontend", "region", "api_endpoint", "share_name", "public_url", "account_token", "share_auth"}


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code
    assert body["message"]
    return body


def printer_rows(files) -> list[tuple]:
    return run_sql(files["database_url"], "SELECT id, frontend, hardware_id FROM printers ORDER BY id")


# -- enrollment tokens ---------------------------------------------------------------------------

def test_enrollment_token_created_by_admin(api):
    response = api.client.post("/v1/enrollment-tokens", headers=api.admin, json={"max_uses": 3, "expires_in_s": 3600})
    assert response.status_code == 200
    body = response.json()
    assert body["token"].startswith("fleet-enroll-")
    assert len(body["token"]) > 40
    assert body["max_uses"] == 3
    assert body["expires_at"] is not None


def test_enrollment_token_limits_checked(api):
    whole = api.client.post("/v1/enrollment-tokens", headers=api.admin, json={"max_uses": 2.0})
    too_many = api.client.post("/v1/enrollment-tokens", headers=api.admin, json={"max_uses": 2**31})
    fraction = api.client.post("/v1/enrollment-tokens", headers=api.admin, json={"max_uses": 2.5})

    assert whole.status_code == 200, whole.text
    assert whole.json()["max_uses"] == 2
    assert "max_uses" in assert_error(too_many, 422, "invalid_request")["message"]
    assert "max_uses" in assert_error(fraction, 422, "invalid_request")["message"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-admin-token-000000000"},
                                     {"Authorization": "Basic Zm9vOmJhcg=="}])
def test_enrollment_token_requires_admin(api, headers):
    assert_error(api.client.post("/v1/enrollment-tokens", headers=headers, json={}), 401, "unauthorized")


def test_enrollment_token_rejects_printer_token(api):
    printer_token = api.register(api.enrollment_token(), "p1", **NEAR_EU).json()["printer_token"]
    response = api.client.post("/v1/enrollment-tokens", headers={"Authorization": f"Bearer {printer_token}"})
    assert_error(response, 401, "unauthorized")


# -- registration --------------------------------------------------------------------------------

def test_register_new_printer(api, fleet_files):
    response = api.register(api.enrollment_token(), "printer-0001", agent_version="1.0.0",
                            moonraker_api_key="0123456789abcdef0123456789abcdef", **NEAR_EU)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["printer_id"] == "printer-0001"
    assert body["printer_token"].startswith("fleet-printer-")
    assert body["heartbeat_interval_s"] == 30
    assignment = body["assignment"]
    assert set(assignment) == ASSIGNMENT_FIELDS
    assert assignment["frontend"] == "eu-1"
    assert assignment["region"] == "eu"
    assert assignment["api_endpoint"] == fleet_files["zrok"]["eu-1"].url
    assert assignment["share_name"] == "p-printer-0001"
    assert assignment["public_url"] == "https://p-printer-0001.eu.fleet.test"
    assert assignment["share_auth"]["mode"] == "basic"
    assert assignment["share_auth"]["username"] == "fleet"
    assert len(assignment["share_auth"]["password"]) >= 24


def test_register_creates_zrok_account(api, fleet_files):
    zrok = fleet_files["zrok"]["eu-1"]

    assignment = api.register(api.enrollment_token(), "printer-0001", **NEAR_EU).json()["assignment"]

    [(email, account_token)] = zrok.accounts.items()
    assert email.startswith("printer-0001-")
    assert email.endswith("@printers.fleet.invalid")
    assert account_token == assignment["account_token"]
    assert fleet_files["zrok"]["us-1"].accounts == {}


def test_unstored_zrok_account_blocks_nothing(api, fleet_files):
    # A server killed between creating the account and storing its token leaves the account on
    # the instance; the printer's retry must still get an account.
    zrok = fleet_files["zrok"]["eu-1"]
    token = api.enrollment_token()
    first = api.register(token, "printer-0001", **NEAR_EU).json()
    run_sql(fleet_files["database_url"], "DELETE FROM zrok_accounts")

    retry = api.register(first["printer_token"], "printer-0001")

    assert retry.status_code == 200, retry.text
    assert retry.json()["assignment"]["account_token"] != first["assignment"]["account_token"]
    assert len(zrok.accounts) == 2


def test_register_again_keeps_assignment(api, fleet_files):
    first = api.register(api.enrollment_token(), "printer-0001", **NEAR_EU).json()

    again = api.register(first["printer_token"], "printer-0001", **NEAR_US)

    assert again.status_code == 200
    assert "printer_token" not in again.json()
    assert again.json()["assignment"] == first["assignment"]
    assert fleet_files["zrok"]["eu-1"].account_requests == 1
    assert api.frontends()["eu-1"]["assigned"] == 1


def test_reenrollment_replaces_printer_token(api):
    token = api.enrollment_token()
    first = api.register(token, "printer-0001", **NEAR_EU).json()

    second = api.register(token, "printer-0001", **NEAR_EU)

    assert second.status_code == 200
    assert second.json()["printer_token"] != first["printer_token"]
    assert second.json()["assignment"] == first["assignment"]
    assert_error(api.register(first["printer_token"], "printer-0001"), 401, "unauthorized")
    assert api.frontends()["eu-1"]["assigned"] == 1


def test_cloned_sd_card_rejected(api, fleet_files):
    token = api.enrollment_token()
    first = api.register(token, "printer-0001", hardware_id="hw-original-0001", **NEAR_EU).json()
    before = printer_rows(fleet_files)

    by_enrollment = api.register(token, "printer-0001", hardware_id="hw-clone-0002", **NEAR_EU)
    by_copied_token = api.register(first["printer_token"], "printer-0001", hardware_id="hw-clone-0002")

    assert "another machine" in assert_error(by_enrollment, 409, "printer_id_conflict")["message"]
    assert_error(by_copied_token, 409, "printer_id_conflict")
    assert printer_rows(fleet_files) == before
    assert api.heartbeat(first["printer_token"], "printer-0001", "eu-1").status_code == 200


def test_register_other_printer_forbidden(api):
    token = api.enrollment_token()
    first = api.register(token, "printer-0001", **NEAR_EU).json()
    api.register(token, "printer-0002", **NEAR_EU)

    response = api.register(first["printer_token"], "printer-0002", hardware_id="hw-printer-0002-0001")

    assert_error(response, 403, "forbidden")


@pytest.mark.parametrize("authorization", [None, "Bearer ", "Bearer fleet-enroll-unknown0000000000000000",
                                           "Bearer fleet-printer-unknown000000000000000", "Bearer garbage"])
def test_register_bad_token_unauthorized(api, fleet_files, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = api.client.post("/v1/printers/register", headers=headers,
                               json={"printer_id": "printer-0001", "hardware_id": "hw-printer-0001"})
    assert_error(response, 401, "unauthorized")
    assert printer_rows(fleet_files) == []


def test_expired_enrollment_token_rejected(api, fleet_files):
    token = api.enrollment_token(expires_in_s=60)
    run_sql(fleet_files["database_url"], "UPDATE enrollment_tokens SET expires_at = '2020-01-01 00:00:00.000000'")

    assert "expired" in assert_error(api.register(token, "printer-0001"), 401, "unauthorized")["message"]
    assert printer_rows(fleet_files) == []


def test_enrollment_token_use_limit(api, fleet_files):
    token = api.enrollment_token(max_uses=2)

    assert api.register(token, "printer-0001", **NEAR_EU).status_code == 200
    assert api.register(token, "printer-0002", **NEAR_EU).status_code == 200
    third = api.register(token, "printer-0003", **NEAR_EU)

    assert_error(third, 401, "unauthorized")
    assert [row[0] for row in printer_rows(fleet_files)] == ["printer-0001", "printer-0002"]


def test_capacity_exhausted_changes_nothing(api, fleet_files):
    token = api.enrollment_token(max_uses=11)
    for number in range(10):
        assert api.register(token, f"printer-{number:04d}", **NEAR_EU).status_code == 200

    response = api.register(token, "printer-0010", **NEAR_EU)

    assert "capacity is exhausted" in assert_error(response, 503, "capacity_exhausted")["message"]
    assert response.headers["retry-after"]
    frontends = api.frontends()
    assert frontends["eu-1"]["assigned"] == 5
    assert frontends["us-1"]["assigned"] == 5
    assert len(printer_rows(fleet_files)) == 10
    # The rejected enrollment did not use up the token.
    assert api.register(token, "printer-0000", **NEAR_EU).status_code == 200


def test_zrok_admin_api_failure(api, fleet_files):
    fleet_files["zrok"]["eu-1"].admin_secret = "a-different-secret-0000000000"

    response = api.register(api.enrollment_token(), "printer-0001", **NEAR_EU)

    body = assert_error(response, 503, "zrok_account_failed")
    assert "eu-admin-secret" not in body["message"]
    assert "HTTP 401" in body["message"]


def test_zrok_account_reused_after_failure(api, fleet_files):
    zrok = fleet_files["zrok"]["eu-1"]
    zrok.admin_secret = "a-different-secret-0000000000"
    token = api.enrollment_token()
    api.register(token, "printer-0001", **NEAR_EU)
    zrok.admin_secret = "eu-admin-secret-a1b2c3d4e5f60718"

    retry = api.register(token, "printer-0001", **NEAR_EU)
    again = api.register(retry.json()["printer_token"], "printer-0001")

    assert retry.status_code == 200
    assert again.json()["assignment"]["account_token"] == retry.json()["assignment"]["account_token"]
    assert len(zrok.accounts) == 1


@pytest.mark.parametrize("status", [502, 503])
def test_zrok_controller_outage_then_recovery(make_api, fleet_files, status):
    api = make_api(zrok_account_pool_size=2)
    zrok = fleet_files["zrok"]["eu-1"]
    token = api.enrollment_token()
    zrok.account_status = status

    refilled_during_outage = api.app.state.fleet.refill_account_pools()
    failed = [api.register(token, "printer-0001", **NEAR_EU) for _ in range(3)]

    assert refilled_during_outage == 2  # us-1 only
    for response in failed:
        body = assert_error(response, 503, "zrok_account_failed")
        assert f"HTTP {status}" in body["message"]
        assert response.headers["retry-after"]
    assert zrok.accounts == {}
    assert api.frontends()["eu-1"]["assigned"] == 1

    zrok.account_status = None
    recovered = api.register(token, "printer-0001", **NEAR_EU)

    assert recovered.status_code == 200, recovered.text
    assert recovered.json()["assignment"]["frontend"] == "eu-1"
    assert recovered.json()["assignment"]["account_token"] in zrok.accounts.values()
    assert api.frontends()["eu-1"]["assigned"] == 1
    assert api.app.state.fleet.refill_account_pools() == 2
    assert printer_rows(fleet_files) == [("printer-0001", "eu-1", "hw-printer-0001-0001")]


def test_account_pool_claimed(make_api, fleet_files):
    api = make_api(zrok_account_pool_size=2)
    assert api.app.state.fleet.refill_account_pools() == 4
    zrok = fleet_files["zrok"]["eu-1"]

    assignment = api.register(api.enrollment_token(), "printer-0001", **NEAR_EU).json()["assignment"]

    assert assignment["account_token"] in zrok.accounts.values()
    assert zrok.account_requests == 2
    assert api.app.state.fleet.refill_account_pools() == 1


# -- heartbeats ----------------------------------------------------------------------------------

def test_heartbeat_stay_records_state(api):
    registered = api.register(api.enrollment_token(), "printer-0001", **NEAR_EU).json()

    response = api.heartbeat(registered["printer_token"], "printer-0001", "eu-1", share_token="abc123",
                             latency_ms={"eu-1": 12.5, "us-1": 95.0}, agent_version="1.0.1")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["action"] == "stay"
    assert body["assignment"] == registered["assignment"]
    assert body["candidates"] == [{"frontend": "us-1", "api_endpoint": api.frontends()["us-1"]["api_endpoint"]}]
    printer = api.printer("printer-0001")
    assert printer["share_state"] == "active"
    assert printer["klippy_state"] == "ready"
    assert printer["latency_ms"] == {"eu-1": 12.5, "us-1": 95.0}
    assert printer["agent_version"] == "1.0.1"
    assert printer["last_heartbeat_at"] is not None


def test_heartbeat_from_wrong_frontend_moves(api):
    registered = api.register(api.enrollment_token(), "printer-0001", **NEAR_EU).json()

    body = api.heartbeat(registered["printer_token"], "printer-0001", "us-1").json()

    assert body["action"] == "move"
    assert body["assignment"]["frontend"] == "eu-1"


def test_heartbeat_other_printer_forbidden(api):
    token = api.enrollment_token()
    first = api.register(token, "printer-0001", **NEAR_EU).json()
    api.register(token, "printer-0002", **NEAR_EU)

    assert_error(api.heartbeat(first["printer_token"], "printer-0002", "eu-1"), 403, "forbidden")
    assert api.printer("printer-0002")["last_heartbeat_at"] is None


def test_heartbeat_bad_tokens(api):
    token = api.enrollment_token()
    api.register(token, "printer-0001", **NEAR_EU)

    assert_error(api.heartbeat(token, "printer-0001", "eu-1"), 401, "unauthorized")
    assert_error(api.heartbeat("fleet-printer-unknown00000000000", "printer-0001", "eu-1"), 401, "unauthorized")
    response = api.client.post("/v1/printers/printer-0001/heartbeat",
                               json={"share_state": "active", "moonraker_state": "ok"})
    assert_error(response, 401, "unauthorized")


def test_restart_share_after_failed_probes(make_api):
    api = make_api(printer_probe_failures=2)
    registered = api.register(api.enrollment_token(), "printer-0001", **NEAR_EU).json()
    token = registered["printer_token"]
    monitor_type = type(api.app.state.monitor) if api.app.state.monitor else None
    from controlserver.services.monitor import Monitor
    monitor = Monitor(api.app.state.fleet)
    assert monitor_type is None

    monitor._record_printer_results({"printer-0001": "HTTP 502"})
    after_one = api.heartbeat(token, "printer-0001", "eu-1").json()
    monitor._record_printer_results({"printer-0001": "HTTP 502"})
    after_two = api.heartbeat(token, "printer-0001", "eu-1").json()
    next_one = api.heartbeat(token, "printer-0001", "eu-1").json()

    assert after_one["action"] == "stay"
    assert after_two["action"] == "restart_share"
    assert "probe" in after_two["reason"]
    assert next_one["action"] == "stay"


# -- admin views ---------------------------------------------------------------------------------

def test_list_printers_paginates(api):
    token = api.enrollment_token()
    for number in range(5):
        api.register(token, f"printer-{number:04d}", **NEAR_EU)

    first = api.client.get("/v1/printers", params={"limit": 2}, headers=api.admin).json()
    second = api.client.get("/v1/printers", params={"limit": 2, "after": first["next_after"]}, headers=api.admin).json()
    last = api.client.get("/v1/printers", params={"limit": 2, "after": second["next_after"]}, headers=api.admin).json()

    assert [p["printer_id"] for p in first["printers"]] == ["printer-0000", "printer-0001"]
    assert [p["printer_id"] for p in second["printers"]] == ["printer-0002", "printer-0003"]
    assert [p["printer_id"] for p in last["printers"]] == ["printer-0004"]
    assert last["next_after"] is None
    assert first["printers"][0]["public_url"] == "https://p-printer-0000.eu.fleet.test"


def test_list_printers_by_frontend(api):
    token = api.enrollment_token()
    api.register(token, "printer-0001", **NEAR_EU)
    api.register(token, "printer-0002", **NEAR_US)

    body = api.client.get("/v1/printers", params={"frontend": "us-1"}, headers=api.admin).json()

    assert [p["printer_id"] for p in body["printers"]] == ["printer-0002"]


def test_get_printer_gives_access(api):
    registered = api.register(api.enrollment_token(), "printer-0001", moonraker_api_key="k" * 32, **NEAR_EU).json()

    printer = api.printer("printer-0001")
    access = api.client.get("/v1/printers/printer-0001/access", headers=api.admin).json()

    assert printer["frontend"] == "eu-1"
    assert "share_auth" not in printer
    assert access["share_auth"] == registered["assignment"]["share_auth"]
    assert access["moonraker_api_key"] == "k" * 32


def test_unknown_printer_not_found(api):
    for method in ("GET", "DELETE"):
        response = api.client.request(method, "/v1/printers/printer-9999", headers=api.admin)
        assert_error(response, 404, "not_found")


def test_delete_printer_frees_capacity(api, fleet_files):
    registered = api.register(api.enrollment_token(), "printer-0001", **NEAR_EU).json()

    response = api.client.delete("/v1/printers/printer-0001", headers=api.admin)

    assert response.status_code == 204
    assert api.frontends()["eu-1"]["assigned"] == 0
    assert printer_rows(fleet_files) == []
    assert_error(api.heartbeat(registered["printer_token"], "printer-0001", "eu-1"), 401, "unauthorized")


@pytest.mark.parametrize("method,path", [
    ("GET", "/v1/printers"), ("GET", "/v1/printers/printer-0001"), ("DELETE", "/v1/printers/printer-0001"),
    ("GET", "/v1/frontends"), ("POST", "/v1/frontends/eu-1/drain"), ("POST", "/v1/frontends/eu-1/undrain"),
])
def test_admin_endpoints_require_admin(api, method, path):
    printer_token = api.register(api.enrollment_token(), "printer-0001", **NEAR_EU).json()["printer_token"]
    for headers in ({}, {"Authorization": f"Bearer {printer_token}"}):
        assert_error(api.client.request(method, path, headers=headers), 401, "unauthorized")
    assert api.frontends()["eu-1"]["draining"] is False


def test_frontends_show_load_and_health(api):
    api.register(api.enrollment_token(), "printer-0001", **NEAR_EU)

    frontends = api.frontends()

    assert set(frontends) == {"eu-1", "us-1"}
    assert frontends["eu-1"]["assigned"] == 1
    assert frontends["eu-1"]["capacity"] == 5
    assert frontends["eu-1"]["load"] == 0.2
    assert frontends["eu-1"]["healthy"] is True
    assert frontends["eu-1"]["zrok_admin_secret"] is True
    assert frontends["eu-1"]["location"] == "fsn1"


def test_drain_and_undrain(api):
    token = api.enrollment_token()

    drained = api.client.post("/v1/frontends/eu-1/drain", headers=api.admin)
    placed_while_drained = api.register(token, "printer-0001", **NEAR_EU).json()["assignment"]["frontend"]
    undrained = api.client.post("/v1/frontends/eu-1/undrain", headers=api.admin)
    placed_after = api.register(token, "printer-0002", **NEAR_EU).json()["assignment"]["frontend"]

    assert drained.json()["draining"] is True
    assert placed_while_drained == "us-1"
    assert undrained.json()["draining"] is False
    assert placed_after == "eu-1"


def test_drain_unknown_frontend(api):
    assert_error(api.client.post("/v1/frontends/nowhere-1/drain", headers=api.admin), 404, "not_found")


# -- service endpoints ---------------------------------------------------------------------------

def test_healthz_and_readyz(api):
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz").json()
    assert ready["status"] == "ready"
    assert ready["frontends"] == 2
    assert ready["inventory_error"] is None


def test_metrics_report_fleet(api):
    registered = api.register(api.enrollment_token(), "printer-0001", **NEAR_EU).json()
    api.heartbeat(registered["printer_token"], "printer-0001", "eu-1")

    text = api.client.get("/metrics").text

    assert 'fleet_printers{frontend="eu-1",share_state="active"} 1.0' in text
    assert 'fleet_frontend_healthy{frontend="eu-1",region="eu"} 1.0' in text
    assert 'fleet_frontend_capacity{frontend="us-1",region="us"} 5.0' in text
    assert 'fleet_assignments_total{frontend="eu-1",reason="new"}' in text
    assert 'fleet_http_request_duration_seconds_bucket{le="0.001",method="POST",route="/v1/printers/register"' in text


def test_openapi_lists_endpoints(api):
    paths = api.client.get("/openapi.json").json()["paths"]
    for path in ("/v1/printers/register", "/v1/printers/{printer_id}/heartbeat", "/v1/enrollment-tokens",
                 "/v1/frontends", "/v1/frontends/{name}/drain", "/v1/printers", "/metrics"):
        assert path in paths


# -- bad input -----------------------------------------------------------------------------------

def test_malformed_json_rejected(api, fleet_files):
    token = api.enrollment_token()
    response = api.client.post("/v1/printers/register", content=b'{"printer_id": "p1", ',
                               headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert_error(response, 400, "malformed_json")
    assert printer_rows(fleet_files) == []


@pytest.mark.parametrize("body,field", [
    ({"printer_id": 42, "hardware_id": "hw-printer-0001"}, "printer_id"),
    ({"printer_id": "Printer_1", "hardware_id": "hw-printer-0001"}, "printer_id"),
    ({"printer_id": "-printer", "hardware_id": "hw-printer-0001"}, "printer_id"),
    ({"printer_id": "p" * 62, "hardware_id": "hw-printer-0001"}, "printer_id"),
    ({"printer_id": "printer-", "hardware_id": "hw-printer-0001"}, "printer_id"),
    ({"hardware_id": "hw-printer-0001"}, "printer_id"),
    ({"printer_id": "printer-0001"}, "hardware_id"),
    ({"printer_id": "printer-0001", "hardware_id": "hw-printer-0001", "latitude": "50.1"}, "latitude"),
    ({"printer_id": "printer-0001", "hardware_id": "hw-printer-0001", "latitude": 91.0}, "latitude"),
    (["printer-0001"], "body"),
])
def test_wrong_types_rejected(api, fleet_files, body, field):
    token = api.enrollment_token()
    response = api.client.post("/v1/printers/register", headers={"Authorization": f"Bearer {token}"}, json=body)
    assert assert_error(response, 422, "invalid_request")["message"].startswith(field)
    assert printer_rows(fleet_files) == []


@pytest.mark.parametrize("printer_id", ["p" * 62, "printer-", "Printer_1", ""])
def test_invalid_printer_id_names_rule(api, fleet_files, printer_id):
    token = api.enrollment_token()

    registered = api.register(token, printer_id)
    heartbeat = api.heartbeat(token, printer_id or "-", "eu-1")

    for response in (registered, heartbeat):
        message = assert_error(response, 422, "invalid_request")["message"]
        assert message.startswith("printer_id ")
        assert "1-61 characters" in message
        assert "^[a-z0-9](?:[a-z0-9-]{0,59}[a-z0-9])?$" in message
    assert printer_rows(fleet_files) == []


def test_longest_printer_id_fits_dns_label(api):
    printer_id = "p" * 61

    assignment = api.register(api.enrollment_token(), printer_id, **NEAR_EU).json()["assignment"]

    assert assignment["share_name"] == f"p-{printer_id}"
    assert len(assignment["share_name"]) == 63
    assert assignment["public_url"] == f"https://p-{printer_id}.eu.fleet.test"


def test_nul_character_rejected(api, fleet_files):
    # PostgreSQL cannot store U+0000 in text, so it must be a 422 on either database.
    token = api.enrollment_token()
    registered = api.register(token, "printer-0001", **NEAR_EU).json()

    by_body = api.register(token, "printer-0002", agent_version="1.0\u0000", **NEAR_EU)
    by_heartbeat = api.heartbeat(registered["printer_token"], "printer-0001", "eu-1", klippy_state="ready\u0000")
    by_query = api.client.get("/v1/printers", params={"after": "printer\u0000"}, headers=api.admin)
    by_path = api.client.post("/v1/frontends/eu%00-1/drain", headers=api.admin)

    assert "agent_version" in assert_error(by_body, 422, "invalid_request")["message"]
    assert "klippy_state" in assert_error(by_heartbeat, 422, "invalid_request")["message"]
    assert "after" in assert_error(by_query, 422, "invalid_request")["message"]
    assert "name" in assert_error(by_path, 422, "invalid_request")["message"]
    assert [row[0] for row in printer_rows(fleet_files)] == ["printer-0001"]
    assert api.printer("printer-0001")["last_heartbeat_at"] is None


def test_heartbeat_bad_state_rejected(api):
    registered = api.register(api.enrollment_token(), "printer-0001", **NEAR_EU).json()
    response = api.heartbeat(registered["printer_token"], "printer-0001", "eu-1", share_state="dancing")
    assert "share_state" in assert_error(response, 422, "invalid_request")["message"]
    assert api.printer("printer-0001")["last_heartbeat_at"] is None


def test_oversized_body_rejected(api, fleet_files):
    token = api.enrollment_token()
    body = {"printer_id": "printer-0001", "hardware_id": "hw-printer-0001", "region": "x" * 70000}
    response = api.client.post("/v1/printers/register", headers={"Authorization": f"Bearer {token}"}, json=body)
    assert_error(response, 413, "body_too_large")
    assert printer_rows(fleet_files) == []


def test_unknown_endpoint_json_404(api):
    assert_error(api.client.get("/v1/nothing-here"), 404, "not_found")
    assert_error(api.client.put("/healthz"), 405, "method_not_allowed")


def test_frontend_probes_bounded(make_api):
    api = make_api(frontend_probe_concurrency=1)
    from controlserver.services.monitor import Monitor
    monitor = Monitor(api.app.state.fleet)
    in_flight, max_in_flight = 0, 0
    probed = []

    async def slow_probe(api_endpoint: str, health_url: str) -> None:
        nonlocal in_flight, max_in_flight
        in_flight += 1
        max_in_flight = max(max_in_flight, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        probed.append(api_endpoint)

    monitor._probe_frontend = slow_probe
    asyncio.run(monitor.probe_frontends())
    assert len(probed) == 2  # eu-1 and us-1
    assert max_in_flight == 1
