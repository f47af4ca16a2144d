"""Request and response bodies of the REST API (the agent's side is in docs/agent-protocol.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# 1-61 characters, so that the share name `p-<printer_id>` fits in one DNS label (63 characters),
# and no hyphen at the end, which a DNS label may not have either.
PRINTER_ID_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,59}[a-z0-9])?$"
PRINTER_ID_RULE = (
    "use 1-61 characters of a-z, 0-9 and '-', starting and ending with a letter or digit "
    f"(pattern {PRINTER_ID_PATTERN}), so that the share name p-<printer_id> fits in one DNS label"
)


# Text without U+0000, which PostgreSQL cannot store in a text column. The pattern is part of the
# OpenAPI document, so clients can see the rule.
NO_NUL_PATTERN = r"^[^\x00]*$"
NUL_MESSAGE = "must not contain the NUL character (U+0000)"
Text = Annotated[str, Field(pattern=NO_NUL_PATTERN)]

# The largest value of the database's INTEGER columns (32 bits on PostgreSQL).
MAX_DATABASE_INTEGER = 2**31 - 1


def _whole_number(value):
    # JSON Schema counts 2.0 as an integer, and some JSON encoders write whole numbers that way.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class Strict(BaseModel):
    # Unknown fields are ignored so that newer agents can send more; known ones are type-checked
    # without coercion, so `"latitude": "50"` is a 422 instead of a silent conversion.
    # NaN and infinity, which Python's JSON parser accepts, are rejected.
    model_config = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False)


class RegisterRequest(Strict):
    printer_id: str = Field(pattern=PRINTER_ID_PATTERN)
    hardware_id: str = Field(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9:_-]+$")
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    region: Text | None = Field(default=None, max_length=128)
    agent_version: Text | None = Field(default=None, max_length=64)
    moonraker_version: Text | None = Field(default=None, max_length=64)
    moonraker_api_key: Text | None = Field(default=None, min_length=1, max_length=128)


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
    frontend: Text | None = Field(default=None, max_length=128)
    share_state: Literal["active", "starting", "stopped", "failed", "none"]
    share_token: Text | None = Field(default=None, max_length=128)
    moonraker_state: Literal["ok", "unreachable", "error"]
    klippy_state: Text | None = Field(default=None, max_length=32)
    # Keys are frontend names. additionalProperties shows OpenAPI readers that keys outside the
    # pattern are rejected, not merely unconstrained.
    latency_ms: dict[Text, float] = Field(default_factory=dict, max_length=64,
                                          json_schema_extra={"additionalProperties": False})
    agent_version: Text | None = Field(default=None, max_length=64)


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
    max_uses: int | None = Field(default=None, ge=1, le=MAX_DATABASE_INTEGER)
    description: Text = Field(default="", max_length=255)

    # A validator of the field, not of the type: a type-level BeforeValidator makes pydantic
    # write the bounds to the JSON schema as `ge`/`le` instead of `minimum`/`maximum`.
    _whole_numbers = field_validator("expires_in_s", "max_uses", mode="before")(_whole_number)


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
    moonraker_api_key: str | None = Field(
        description="send as header X-Api-Key; null when the agent reported none (Moonraker then needs no key "
                    "from trusted clients, or rejects the request)")
    warnings: list[str] = Field(description="reasons why the public URL may not respond right now")


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
