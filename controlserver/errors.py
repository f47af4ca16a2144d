"""Domain errors. Each carries its HTTP status and machine code; api.app maps them to responses."""

from __future__ import annotations


class FleetError(Exception):
    """An error a client can act on: `code` is machine-readable, the message names the fix."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class AuthenticationFailed(FleetError):
    status = 401
    code = "unauthorized"


class Forbidden(FleetError):
    status = 403
    code = "forbidden"


class NotFound(FleetError):
    status = 404
    code = "not_found"


class PrinterIdConflict(FleetError):
    """The printer id is enrolled from another machine (different hardware id)."""

    status = 409
    code = "printer_id_conflict"


class CapacityExhausted(FleetError):
    status = 503
    code = "capacity_exhausted"


class ZrokAccountFailed(FleetError):
    """The zrok admin API of the assigned frontend failed; the client retries later."""

    status = 503
    code = "zrok_account_failed"


class InventoryError(Exception):
    """The inventory is invalid; the message names the host and field."""


class NotReady(FleetError):
    status = 503
    code = "not_ready"
