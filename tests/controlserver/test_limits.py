"""Request limits: body size (413) and requests per token (429 with Retry-After)."""

from __future__ import annotations

import pytest

from tests.controlserver.conftest import NEAR_EU, run_sql

DATABASE_ENGINES = ("sqlite", "postgresql")


def assert_json_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == code
    assert body["message"]
    return body


def heartbeat_times(files) -> list[tuple]:
    return run_sql(files["database_url"], "SELECT id, last_heartbeat_at FROM printers ORDER BY id")


def test_printer_token_rate_limited(make_api, fleet_files):
    api = make_api(rate_limit_printer_per_minute=3)
    token = api.enrollment_token()
    first = api.register(token, "printer-0001", **NEAR_EU).json()["printer_token"]
    second = api.register(token, "printer-0002", **NEAR_EU).json()["printer_token"]

    statuses = [api.heartbeat(first, "printer-0001", "eu-1").status_code for _ in range(3)]
    recorded = heartbeat_times(fleet_files)
    limited = api.heartbeat(first, "printer-0001", "eu-1")

    assert statuses == [200, 200, 200]
    body = assert_json_error(limited, 429, "rate_limited")
    assert "printer token" in body["message"]
    assert "FLEET_RATE_LIMIT_PRINTER_PER_MINUTE" in body["message"]
    assert 1 <= int(limited.headers["retry-after"]) <= 20
    assert heartbeat_times(fleet_files) == recorded
    assert api.heartbeat(second, "printer-0002", "eu-1").status_code == 200


def test_admin_token_rate_limited(make_api):
    api = make_api(rate_limit_admin_per_minute=2)
    token = api.enrollment_token()
    api.frontends()

    limited = api.client.get("/v1/frontends", headers=api.admin)

    assert_json_error(limited, 429, "rate_limited")
    assert int(limited.headers["retry-after"]) >= 1
    # Other kinds of token have limits of their own.
    assert api.register(token, "printer-0001", **NEAR_EU).status_code == 200


def test_operator_token_rate_limited(make_api):
    alice = "fleet-operator-alice-3c9d0e1f2a4b5c6d"
    bob = "fleet-operator-bob-8e7d6c5b4a392817"
    api = make_api(rate_limit_admin_per_minute=2, operator_tokens=f"alice:{alice},bob:{bob}")
    statuses = [api.client.get("/v1/frontends", headers={"Authorization": f"Bearer {alice}"}).status_code
                for _ in range(2)]

    limited = api.client.get("/v1/frontends", headers={"Authorization": f"Bearer {alice}"})

    assert statuses == [200, 200]
    body = assert_json_error(limited, 429, "rate_limited")
    assert "FLEET_RATE_LIMIT_ADMIN_PER_MINUTE" in body["message"]
    # Each operator has a bucket of its own, apart from the admin's.
    assert api.client.get("/v1/frontends", headers={"Authorization": f"Bearer {bob}"}).status_code == 200
    assert api.client.get("/v1/frontends", headers=api.admin).status_code == 200


def test_enrollment_token_rate_limited(make_api, fleet_files):
    api = make_api(rate_limit_enrollment_per_minute=2)
    token = api.enrollment_token()
    other = api.enrollment_token()

    statuses = [api.register(token, f"printer-{n:04d}", **NEAR_EU).status_code for n in range(3)]

    assert statuses == [200, 200, 429]
    assert [row[0] for row in heartbeat_times(fleet_files)] == ["printer-0000", "printer-0001"]
    assert api.register(other, "printer-0002", **NEAR_EU).status_code == 200


def test_unknown_tokens_limited_too(make_api):
    api = make_api(rate_limit_printer_per_minute=1)
    headers = {"Authorization": "Bearer fleet-printer-unknown000000000000000"}

    first = api.client.get("/v1/frontends", headers=headers)
    second = api.client.get("/v1/frontends", headers=headers)

    assert_json_error(first, 401, "unauthorized")
    assert_json_error(second, 429, "rate_limited")


def test_rate_limit_zero_turns_off(make_api):
    api = make_api(rate_limit_admin_per_minute=0)
    for _ in range(5):
        api.frontends()


def test_declared_oversized_body_rejected(api, fleet_files):
    token = api.enrollment_token()
    response = api.client.post("/v1/printers/register", content=b"{" + b" " * 70000 + b"}",
                               headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    body = assert_json_error(response, 413, "body_too_large")
    assert "65536 bytes" in body["message"]
    assert heartbeat_times(fleet_files) == []


def test_chunked_oversized_body_rejected(api, fleet_files):
    token = api.enrollment_token()

    def chunks():
        yield b'{"printer_id": "printer-0001", "hardware_id": "hw-printer-0001", "region": "'
        for _ in range(20):
            yield b"x" * 4096
        yield b'"}'

    response = api.client.post("/v1/printers/register", content=chunks(),
                               headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert_json_error(response, 413, "body_too_large")
    assert heartbeat_times(fleet_files) == []


@pytest.mark.parametrize("limit", [4096])
def test_body_limit_configurable(make_api, fleet_files, limit):
    api = make_api(max_body_bytes=limit)
    token = api.enrollment_token()
    response = api.register(token, "printer-0001", region="x" * limit)
    assert f"{limit} bytes" in assert_json_error(response, 413, "body_too_large")["message"]
