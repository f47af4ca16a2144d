"""Operator tokens, roles and printer access, through the API in-process."""

from __future__ import annotations

import json
import logging

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from controlserver.core.logging import JsonFormatter
from controlserver.core.roles import new_operator_token
from controlserver.core.settings import Settings
from tests.controlserver.conftest import ADMIN_TOKEN, NEAR_EU, make_settings
from tests.controlserver.test_api import assert_error

ALICE_TOKEN = "fleet-operator-alice-3c9d0e1f2a4b5c6d"
BOB_TOKEN = "fleet-operator-bob-8e7d6c5b4a392817"


@pytest.fixture
def captured_logs():
    """Log records of the control server, formatted as the server writes them."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger = logging.getLogger("controlserver")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    yield lambda: [json.loads(JsonFormatter().format(record)) for record in records]
    logger.removeHandler(handler)
    logger.setLevel(previous)


@pytest.fixture
def operator_api(make_api):
    return make_api(operator_tokens=f"alice:{ALICE_TOKEN},bob:{BOB_TOKEN}")


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_operator_reads_fleet(operator_api):
    operator_api.register(operator_api.enrollment_token(), "printer-0001", **NEAR_EU)

    printers = operator_api.client.get("/v1/printers", headers=bearer(ALICE_TOKEN))
    printer = operator_api.client.get("/v1/printers/printer-0001", headers=bearer(ALICE_TOKEN))
    frontends = operator_api.client.get("/v1/frontends", headers=bearer(BOB_TOKEN))

    assert printers.status_code == 200
    assert [p["printer_id"] for p in printers.json()["printers"]] == ["printer-0001"]
    assert printer.status_code == 200
    assert printer.json()["public_url"] == "https://p-printer-0001.eu.fleet.test"
    assert "share_auth" not in printer.json()
    assert "moonraker_api_key" not in printer.json()
    assert frontends.status_code == 200


@pytest.mark.parametrize("method,path", [
    ("POST", "/v1/enrollment-tokens"), ("POST", "/v1/frontends/eu-1/drain"),
    ("POST", "/v1/frontends/eu-1/undrain"), ("DELETE", "/v1/printers/printer-0001"),
])
def test_operator_cannot_manage(operator_api, fleet_files, method, path):
    operator_api.register(operator_api.enrollment_token(), "printer-0001", **NEAR_EU)

    response = operator_api.client.request(method, path, headers=bearer(ALICE_TOKEN))

    body = assert_error(response, 403, "forbidden")
    assert "operator token of alice does not allow manage" in body["message"]
    assert operator_api.frontends()["eu-1"]["draining"] is False
    assert operator_api.frontends()["eu-1"]["assigned"] == 1


def test_access_gives_url_and_credentials(operator_api, captured_logs):
    registered = operator_api.register(operator_api.enrollment_token(), "printer-0001",
                                       moonraker_api_key="k" * 32, **NEAR_EU).json()
    operator_api.heartbeat(registered["printer_token"], "printer-0001", "eu-1")

    response = operator_api.client.get("/v1/printers/printer-0001/access", headers=bearer(ALICE_TOKEN))

    assert response.status_code == 200, response.text
    access = response.json()
    assert access["public_url"] == registered["assignment"]["public_url"]
    assert access["share_auth"] == registered["assignment"]["share_auth"]
    assert access["moonraker_api_key"] == "k" * 32
    assert access["warnings"] == []
    granted = [e for e in captured_logs() if e["message"] == "printer access granted"]
    assert granted == [{**granted[0], "printer": "printer-0001", "frontend": "eu-1", "operator": "alice",
                        "role": "operator"}]
    for secret in (ALICE_TOKEN, "k" * 32, access["share_auth"]["password"]):
        assert secret not in json.dumps(captured_logs())


def test_access_by_admin_logged_as_admin(operator_api, captured_logs):
    operator_api.register(operator_api.enrollment_token(), "printer-0001", **NEAR_EU)

    response = operator_api.client.get("/v1/printers/printer-0001/access", headers=operator_api.admin)

    assert response.status_code == 200
    granted = [e for e in captured_logs() if e["message"] == "printer access granted"]
    assert [(e["operator"], e["role"]) for e in granted] == [("admin", "admin")]


def access_count(api, role: str) -> float:
    for family in text_string_to_metric_families(api.client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "fleet_printer_access_total" and sample.labels == {"role": role}:
                return sample.value
    return 0.0


def test_access_counted_in_metrics(operator_api):
    operator_api.register(operator_api.enrollment_token(), "printer-0001", **NEAR_EU)
    before = access_count(operator_api, "operator")

    operator_api.client.get("/v1/printers/printer-0001/access", headers=bearer(BOB_TOKEN))

    assert access_count(operator_api, "operator") == before + 1


def test_access_warns_about_unusable_share(operator_api):
    registered = operator_api.register(operator_api.enrollment_token(), "printer-0001", **NEAR_EU).json()
    operator_api.heartbeat(registered["printer_token"], "printer-0001", "eu-1", share_state="failed")
    operator_api.client.post("/v1/frontends/eu-1/drain", headers=operator_api.admin)

    warnings = operator_api.client.get("/v1/printers/printer-0001/access", headers=bearer(ALICE_TOKEN)).json()["warnings"]

    assert "frontend eu-1 is draining; the printer will be moved" in warnings
    assert "the agent reports its share as failed" in warnings


def test_access_without_token_unauthorized(operator_api):
    operator_api.register(operator_api.enrollment_token(), "printer-0001", **NEAR_EU)
    printer_token = operator_api.register(operator_api.enrollment_token(), "printer-0002", **NEAR_EU).json()["printer_token"]

    for headers in ({}, bearer("fleet-operator-unknown-000000000000"), bearer(printer_token)):
        response = operator_api.client.get("/v1/printers/printer-0001/access", headers=headers)
        assert_error(response, 401, "unauthorized")


def test_access_unknown_printer_not_found(operator_api):
    response = operator_api.client.get("/v1/printers/printer-9999/access", headers=bearer(ALICE_TOKEN))
    assert_error(response, 404, "not_found")


def test_operator_tokens_file_holds_hashes(make_api, fleet_files):
    token, stored = new_operator_token()
    path = fleet_files["tmp"] / "operators.yml"
    path.write_text(yaml.safe_dump({"operator_tokens": {"carol": stored}}))
    api = make_api(operator_tokens_file=path)
    api.register(api.enrollment_token(), "printer-0001", **NEAR_EU)

    allowed = api.client.get("/v1/printers/printer-0001/access", headers=bearer(token))
    denied = api.client.post("/v1/frontends/eu-1/drain", headers=bearer(token))

    assert token not in path.read_text()
    assert allowed.status_code == 200
    assert_error(denied, 403, "forbidden")


@pytest.mark.parametrize("value,message", [
    ("alice", "entry 1 is invalid: use name:token"),
    ("Alice:" + ALICE_TOKEN, "operator name 'Alice' is invalid"),
    ("alice:changeme", "token of operator alice is a placeholder value"),
    (f"alice:{ALICE_TOKEN},alice:{BOB_TOKEN}", "operator alice is listed twice"),
    (f"alice:{ALICE_TOKEN},bob:{ALICE_TOKEN}", "operators alice and bob share a token"),
])
def test_operator_tokens_setting_rejected(fleet_files, value, message):
    settings = make_settings(fleet_files, operator_tokens=value)
    with pytest.raises(ValueError, match=message) as raised:
        settings.load_operator_tokens()
    assert ALICE_TOKEN not in str(raised.value)


@pytest.mark.parametrize("document,message", [
    ({"operator_tokens": {"dave": "plain-token-0123456789abcdef"}}, "operator_tokens.dave is invalid"),
    ({"operator_tokens": ["dave"]}, "operator_tokens is invalid"),
    ({"operator_tokens": {"Dave!": "sha256:" + "0" * 64}}, "operator name 'Dave!' is invalid"),
])
def test_operator_tokens_file_rejected(fleet_files, document, message):
    path = fleet_files["tmp"] / "operators.yml"
    path.write_text(yaml.safe_dump(document))
    settings = make_settings(fleet_files, operator_tokens_file=path)
    with pytest.raises(ValueError, match=message) as raised:
        settings.load_operator_tokens()
    assert "plain-token-0123456789abcdef" not in str(raised.value)


def test_operator_tokens_file_not_yaml(fleet_files):
    path = fleet_files["tmp"] / "operators.yml"
    path.write_text("operator_tokens:\n  dave: [plain-token-0123456789abcdef\n")
    settings = make_settings(fleet_files, operator_tokens_file=path)
    with pytest.raises(ValueError, match="is not valid YAML at line 3") as raised:
        settings.load_operator_tokens()
    assert "plain-token" not in str(raised.value)


def test_operator_token_equal_to_admin_rejected(fleet_files):
    settings = make_settings(fleet_files, operator_tokens=f"eve:{ADMIN_TOKEN}")
    with pytest.raises(ValueError, match="an operator token equals the admin token"):
        from controlserver.api.app import create_app
        create_app(settings)


def test_settings_read_operator_tokens_from_environment(fleet_files, monkeypatch):
    monkeypatch.setenv("FLEET_OPERATOR_TOKENS", f"alice:{ALICE_TOKEN}")
    settings = Settings(inventory=fleet_files["inventory"], admin_token=ADMIN_TOKEN)

    assert list(settings.load_operator_tokens()) == ["alice"]
