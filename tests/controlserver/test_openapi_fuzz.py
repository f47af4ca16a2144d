"""Schemathesis sends generated requests to every operation of the OpenAPI document of a real
server process: no 5xx, no unhandled exception, every error in the documented JSON shape."""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import missing_required_header, negative_data_rejection

from tests.controlserver.conftest import ADMIN_TOKEN, NEAR_EU, ServerProcess

DATABASE_ENGINES = ("sqlite", "postgresql")

# The server ignores unknown query parameters and body fields by design, because newer agents may
# send more. This test also always sends the Authorization header that a case may leave out. So
# the checks that expect such requests to be rejected do not apply.
EXCLUDED_CHECKS = [negative_data_rejection, missing_required_header]
# Few examples per operation keep the run at about a minute; raise this locally to search deeper.
MAX_EXAMPLES = 30


@pytest.fixture
def fuzz_server(fleet_files):
    # Room for every generated registration: a full fleet's documented 503 is not what this looks for.
    inventory = fleet_files["inventory"]
    inventory.write_text(inventory.read_text().replace("fleet_capacity: 5", "fleet_capacity: 100000"))
    env = {"FLEET_RATE_LIMIT_PRINTER_PER_MINUTE": "100000", "FLEET_RATE_LIMIT_ADMIN_PER_MINUTE": "100000",
           "FLEET_MONITOR_ENABLED": "false"}
    server = ServerProcess(fleet_files, env=env).start()
    api = server.client()
    server.enrollment_token = api.enrollment_token()
    registered = api.register(server.enrollment_token, "printer-0001", **NEAR_EU).json()
    server.printer_token = registered["printer_token"]
    yield server
    server.stop()


def token_for(operation, server: ServerProcess) -> str | None:
    """Return the token an operation needs, so that generated data gets past authentication."""
    if operation.path in ("/healthz", "/readyz", "/metrics"):
        return None
    if operation.path == "/v1/printers/register":
        return server.enrollment_token
    if operation.path.endswith("/heartbeat"):
        return server.printer_token
    return ADMIN_TOKEN


def assert_error_shape(case, response) -> None:
    """Check that an error response is the documented `{"error", "message"}` JSON object."""
    if response.status_code < 400:
        return
    where = f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.startswith("application/json"), where
    body = json.loads(response.content)
    assert isinstance(body, dict), where
    assert set(body) == {"error", "message"}, where
    assert isinstance(body["error"], str) and body["error"], where
    assert isinstance(body["message"], str) and body["message"], where


# NOTE: schemathesis 4.32.5's pytest loader (`schemathesis.pytest.from_fixture`) fails on
# pytest 9.2 (it reads the removed `Item._nodeid`), so this test draws cases from each
# operation's Hypothesis strategy itself.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_openapi_operations(fuzz_server, mode):
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 11
    without_invalid: list[str] = []

    for operation in operations:
        token = token_for(operation, fuzz_server)
        headers = {"Authorization": f"Bearer {token}"} if token else {}

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            response = case.call(base_url=fuzz_server.url, headers=headers)
            assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"
            assert_error_shape(case, response)
            case.validate_response(response, headers=headers, excluded_checks=EXCLUDED_CHECKS)

        try:
            check()
        except Unsatisfiable:
            # An operation without parameters or body has no invalid variant to generate.
            assert mode is GenerationMode.NEGATIVE, f"{operation.method} {operation.path}"
            without_invalid.append(operation.path)

    assert set(without_invalid) <= {"/healthz", "/readyz", "/metrics", "/v1/frontends"}
    unexpected = [e for e in fuzz_server.log_entries() if e["message"] == "unexpected error"]
    assert unexpected == [], unexpected[0].get("exception")
