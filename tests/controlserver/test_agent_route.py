"""The agents' routes: well-formed requests skip dependency solving, all others behave as before."""

from __future__ import annotations

import json
import sqlite3

import fastapi.routing
import pytest
from fastapi import APIRouter, Request

from controlserver.api import schemas
from controlserver.api.agent_route import AgentRoute
from tests.controlserver.conftest import NEAR_EU


@pytest.fixture
def solves(monkeypatch) -> list[str]:
    """Record each request for which FastAPI solves the route's dependencies."""
    solved: list[str] = []
    original = fastapi.routing.solve_dependencies

    async def counting(*args, **kwargs):
        solved.append(kwargs["request"].url.path)
        return await original(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    return solved


def registration(printer_id: str = "printer-0001") -> dict:
    return {"printer_id": printer_id, "hardware_id": f"hw-{printer_id}-0001", **NEAR_EU}


def printer_ids(files) -> list[str]:
    with sqlite3.connect(files["database"]) as connection:
        return [row[0] for row in connection.execute("SELECT id FROM printers ORDER BY id")]


def test_valid_requests_skip_dependency_solving(api, solves):
    token = api.enrollment_token()
    solves.clear()

    registered = api.register(token, "printer-0001", **NEAR_EU)
    assert registered.status_code == 200, registered.text
    heartbeat = api.heartbeat(registered.json()["printer_token"], "printer-0001", "eu-1")
    assert heartbeat.status_code == 200, heartbeat.text

    assert heartbeat.json()["action"] == "stay"
    assert solves == []


def test_admin_routes_still_solve_dependencies(api, solves):
    api.frontends()
    assert solves == ["/v1/frontends"]


@pytest.mark.parametrize("headers", [
    {"Authorization": "bearer {token}"},
    {"Authorization": "Bearer   {token}  "},
    {"Authorization": "Bearer {token}", "Content-Type": "application/json; charset=utf-8"},
    {"Authorization": "Bearer {token}", "Content-Type": "application/merge-patch+json"},
])
def test_registration_accepts_header_variants(api, fleet_files, headers):
    token = api.enrollment_token()
    headers = {"Content-Type": "application/json"} | {name: value.format(token=token) for name, value in headers.items()}

    response = api.client.post("/v1/printers/register", headers=headers, content=json.dumps(registration()))

    assert response.status_code == 200, response.text
    assert response.json()["printer_id"] == "printer-0001"
    assert printer_ids(fleet_files) == ["printer-0001"]


@pytest.mark.parametrize("headers,body,status,code", [
    ({}, registration(), 401, "unauthorized"),
    ({"Authorization": "Basic Zm9vOmJhcg=="}, registration(), 401, "unauthorized"),
    ({"Authorization": "Bearer "}, registration(), 401, "unauthorized"),
    ({"Authorization": "Bearer {token}", "Content-Type": "text/plain"}, registration(), 422, "invalid_request"),
    ({"Authorization": "Bearer {token}"}, b'{"printer_id": "p1", ', 400, "malformed_json"),
    ({"Authorization": "Bearer {token}"}, {**registration(), "longitude": 181.0}, 422, "invalid_request"),
    ({"Authorization": "Bearer {token}"}, {**registration(), "moonraker_api_key": ""}, 422, "invalid_request"),
])
def test_registration_rejections_unchanged(api, fleet_files, headers, body, status, code):
    token = api.enrollment_token()
    headers = {"Content-Type": "application/json"} | {name: value.format(token=token) for name, value in headers.items()}
    content = body if isinstance(body, bytes) else json.dumps(body)

    response = api.client.post("/v1/printers/register", headers=headers, content=content)

    assert response.status_code == status, response.text
    assert response.json()["error"] == code
    assert printer_ids(fleet_files) == []


def test_heartbeat_invalid_path_id_names_field(api):
    registered = api.register(api.enrollment_token(), "printer-0001", **NEAR_EU).json()

    response = api.heartbeat(registered["printer_token"], "Printer_0001", "eu-1")

    assert response.status_code == 422, response.text
    message = response.json()["message"]
    assert message.startswith("printer_id 'Printer_0001' is invalid")
    assert "^[a-z0-9](?:[a-z0-9-]{0,59}[a-z0-9])?$" in message
    assert api.printer("printer-0001")["last_heartbeat_at"] is None


def test_heartbeat_unknown_field_ignored(api):
    registered = api.register(api.enrollment_token(), "printer-0001", **NEAR_EU).json()

    response = api.heartbeat(registered["printer_token"], "printer-0001", "eu-1", sent_by="a newer agent")

    assert response.status_code == 200, response.text
    assert api.printer("printer-0001")["share_state"] == "active"


def test_route_rejects_endpoint_without_token():
    router = APIRouter(route_class=AgentRoute)

    async def endpoint(request: Request, body: schemas.HeartbeatRequest):
        return None

    with pytest.raises(TypeError, match="needs parameters request, body"):
        router.post("/x")(endpoint)
