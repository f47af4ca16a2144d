"""Request and response bodies of the REST API (the agent's side is in docs/agent-protocol.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# 1-61 characters, so that the share name `p-<printer_id>` fits in one DNS label (63 characters),
# and no hyphen at the end, which a DNS label may not have either.
PRINTER_ID_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,59}[a-z0-9])?$"
PRINTER_ID_RULE = (
    "use 1-61 characters of a-z, 0-9 and '-', starting and ending with a letter or digit "
    f"(pattern {PRINTER_ID_PATTERN}), so that the share name p-<printer_id> fits in one DNS label"
)


class Strict(BaseModel):
    # Unknown fields are ignored so that newer agents can send more; known ones are type-checked
    # without coercion, so `"latitude": "50"` is a 422 instead of a silent conversion.
    model_config = ConfigDict(extra="ignore", strict=True)


class RegisterRequest(Strict):
    printer_id: str = Field(pattern=PRINTER_ID_PATTERN)
    hardware_id: str = Field(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9:_-]+$")
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    region: str | None = Field(default=None, max_length=128)
    agent_version: str | None = Field(default=None, max_length=64)
    moonraker_version: str | None = Field(default=None, max_length=64)
    moonraker_api_key: str | None = Field(default=None, min_length=1, max_length=128)


class ShareAuth(BaseModel):
    mode: Literal["basic", "none"]
    username: str | None = None
    password: str | None = None


class Assignment(BaseModel):
    frontend: str
    region: str
    api_endpoint: str
    share_name: str
    public_url: str
    account_token: str
    share_auth: ShareAuth


class RegisterResponse(BaseModel):
    printer_id: str
    printer_token: str | None = None
    assignment: Assignment
    heartbeat_interval_s: int


class HeartbeatRequest(Strict):
    frontend: str | None = Field(default=None, max_length=128)
    share_state: Literal["active", "starting", "stopped", "failed", "none"]
    share_token: str | None = Field(default=None, max_length=128)
    moonraker_state: Literal["ok", "unreachable", "error"]
    klippy_state: str | None = Field(default=None, max_length=32)
    latency_ms: dict[str, float] = Field(default_factory=dict, max_length=64)
    agent_version: str | None = Field(default=None, max_length=64)


class Candidate(BaseModel):
    frontend: str
    api_endpoint: str


class HeartbeatResponse(BaseModel):
    action: Literal["stay", "move", "restart_share"]
    reason: str
    assignment: Assignment
    heartbeat_interval_s: int
    candidates: list[Candidate]


class EnrollmentTokenRequest(Strict):
    expires_in_s: int | None = Field(default=None, ge=60, le=366 * 86400)
    max_uses: int | None = Field(default=None, ge=1)
    description: str = Field(default="", max_length=255)


class EnrollmentTokenResponse(BaseModel):
    token: str
    expires_at: datetime | None
    max_uses: int | None


class PrinterView(BaseModel):
    printer_id: str
    frontend: str | None
    public_url: str | None
    region: str | None
    latitude: float | None
    longitude: float | None
    agent_version: str | None
    moonraker_version: str | None
    enrolled_at: datetime
    registered_at: datetime
    assigned_at: datetime | None
    move_reason: str | None
    last_heartbeat_at: datetime | None
    reported_frontend: str | None
    share_state: str | None
    moonraker_state: str | None
    klippy_state: str | None
    latency_ms: dict[str, float] | None
    probe_failures: int
    last_probe_at: datetime | None
    restart_share_pending: bool


class PrinterList(BaseModel):
    printers: list[PrinterView]
    next_after: str | None = Field(description="pass as `after` to get the next page; null on the last")


class PrinterAccess(PrinterView):
    """A printer with what an operator needs to reach it through its public URL."""

    share_auth: ShareAuth
    moonraker_api_key: str | None


class FrontendView(BaseModel):
    name: str
    region: str
    location: str
    capacity: int
    assigned: int
    load: float
    healthy: bool
    draining: bool
    in_inventory: bool
    api_endpoint: str
    share_domain: str
    zrok_admin_secret: bool
    consecutive_failures: int
    last_probe_at: datetime | None
    last_probe_error: str | None


class FrontendList(BaseModel):
    frontends: list[FrontendView]


class ErrorBody(BaseModel):
    error: str
    message: str
