"""REST routes. Handlers only authenticate, validate and call services.fleet; errors are raised as
controlserver.errors exceptions and turned into JSON by the handlers in api.app."""

from __future__ import annotations

import functools
from typing import Annotated

import anyio

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from controlserver import metrics
from controlserver.api import schemas
from controlserver.api.agent_route import AgentRoute
from controlserver.core.roles import Identity, Permission
from controlserver.errors import AuthenticationFailed, Forbidden, NotReady
from controlserver.services.fleet import Fleet

router = APIRouter()
# The agents' endpoints: requests that pass validation skip FastAPI's dependency solving there.
agent_router = APIRouter(route_class=AgentRoute)
bearer_scheme = HTTPBearer(auto_error=False, description="admin, operator, enrollment or printer token")

ERRORS = {
    400: {"model": schemas.ErrorBody}, 401: {"model": schemas.ErrorBody}, 403: {"model": schemas.ErrorBody},
    404: {"model": schemas.ErrorBody}, 409: {"model": schemas.ErrorBody}, 413: {"model": schemas.ErrorBody},
    422: {"model": schemas.ErrorBody}, 429: {"model": schemas.ErrorBody}, 503: {"model": schemas.ErrorBody},
}


# Dependencies are `async def` because FastAPI runs plain `def` dependencies in a worker thread,
# which costs more than the dependency itself.
async def get_fleet(request: Request) -> Fleet:
    return request.app.state.fleet


async def bearer_token(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]) -> str:
    if credentials is None or not credentials.credentials:
        raise AuthenticationFailed("missing bearer token: send `Authorization: Bearer <token>`")
    return credentials.credentials


def require(permission: Permission):
    """Build a dependency that admits admin and operator tokens whose role has `permission`."""

    async def authorize(request: Request, token: Annotated[str, Depends(bearer_token)]) -> Identity:
        identity = request.app.state.tokens.identify(token)
        if identity is None:
            raise AuthenticationFailed(
                "the bearer token is not an admin or operator token: use FLEET_ADMIN_TOKEN or your operator token"
            )
        if not identity.may(permission):
            raise Forbidden(
                f"the {identity.role} token of {identity.name} does not allow {permission}: operators may read "
                "the fleet and get printer access; drain, undrain, enrollment tokens and deletes need the admin token"
            )
        return identity

    return authorize


async def _in_transaction(request: Request, function, *args):
    """Run `function(connection, *args)` in a write transaction and return its result once committed.

    On SQLite the writer commits queued requests together (core.db.GroupCommit)."""
    return await request.app.state.writer.run(function, *args)


async def _maybe_in_thread(needed: bool, function, *args):
    """Run `function` in a worker thread when it may block on the zrok admin API."""
    if needed:
        return await anyio.to_thread.run_sync(functools.partial(function, *args))
    return function(*args)


def _json(model, **options) -> Response:
    # Serialize once here: returning the model would make FastAPI validate it a second time
    # against response_model, which the registration storm showed as a visible cost.
    return Response(model.model_dump_json(**options), media_type="application/json")


FleetDep = Annotated[Fleet, Depends(get_fleet)]
BearerDep = Annotated[str, Depends(bearer_token)]
PrinterId = Annotated[str, Path(pattern=schemas.PRINTER_ID_PATTERN)]
FrontendName = Annotated[str, Path(max_length=128, pattern=schemas.NO_NUL_PATTERN)]
readers = [Depends(require(Permission.READ))]
admin_only = [Depends(require(Permission.MANAGE))]
AccessIdentity = Annotated[Identity, Depends(require(Permission.ACCESS))]


# -- printers ----------------------------------------------------------------------------------

@agent_router.post("/v1/printers/register", response_model=schemas.RegisterResponse, responses=ERRORS,
             tags=["printers"], response_model_exclude_none=True)
async def register_printer(request: Request, body: schemas.RegisterRequest, token: BearerDep):
    """Enroll (enrollment token) or re-register (printer token) a printer and return its assignment."""
    # The fleet comes from app.state directly on the two agent routes: each dependency costs
    # FastAPI a solve per request, and these routes carry the fleet's load.
    fleet: Fleet = request.app.state.fleet
    printer_token, assigned = await _in_transaction(request, fleet.register_in_transaction, token, body)
    response = await _maybe_in_thread(assigned.account_token is None, fleet.registration_response,
                                      body, printer_token, assigned)
    return _json(response, exclude_none=True)


@agent_router.post("/v1/printers/{printer_id}/heartbeat", response_model=schemas.HeartbeatResponse,
             responses=ERRORS, tags=["printers"])
async def heartbeat(request: Request, printer_id: PrinterId, body: schemas.HeartbeatRequest, token: BearerDep):
    """Record the agent's state and tell it to stay, move or restart its share."""
    fleet: Fleet = request.app.state.fleet
    decision = await _in_transaction(request, fleet.heartbeat_in_transaction, token, printer_id, body)
    response = await _maybe_in_thread(decision.assigned.account_token is None, fleet.heartbeat_response, decision)
    return _json(response)


@router.get("/v1/printers", response_model=schemas.PrinterList, responses=ERRORS, tags=["admin"],
            dependencies=readers)
def list_printers(
    fleet: FleetDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[str | None, Query(max_length=63, pattern=schemas.NO_NUL_PATTERN,
                                       description="printer id to continue after")] = None,
    frontend: Annotated[str | None, Query(max_length=128, pattern=schemas.NO_NUL_PATTERN)] = None,
):
    return fleet.list_printers(limit, after, frontend)


@router.get("/v1/printers/{printer_id}", response_model=schemas.PrinterView, responses=ERRORS,
            tags=["admin"], dependencies=readers)
def get_printer(printer_id: PrinterId, fleet: FleetDep):
    """Return a printer's state and public URL; the credentials come from /access."""
    return fleet.get_printer(printer_id)


@router.get("/v1/printers/{printer_id}/access", response_model=schemas.PrinterAccess, responses=ERRORS,
            tags=["admin"])
def printer_access(printer_id: PrinterId, fleet: FleetDep, identity: AccessIdentity):
    """Return the printer's public URL with the share credentials and Moonraker API key; logs who asked."""
    return fleet.printer_access(printer_id, identity)


@router.delete("/v1/printers/{printer_id}", status_code=204, responses=ERRORS, tags=["admin"],
               dependencies=admin_only)
def delete_printer(printer_id: PrinterId, fleet: FleetDep):
    """Forget a printer, e.g. after its hardware was replaced; it can enroll again."""
    fleet.delete_printer(printer_id)
    return Response(status_code=204)


# -- enrollment and frontends ------------------------------------------------------------------

@router.post("/v1/enrollment-tokens", response_model=schemas.EnrollmentTokenResponse, responses=ERRORS,
             tags=["admin"], dependencies=admin_only)
def create_enrollment_token(fleet: FleetDep, body: schemas.EnrollmentTokenRequest | None = None):
    return fleet.create_enrollment_token(body or schemas.EnrollmentTokenRequest())


@router.get("/v1/frontends", response_model=schemas.FrontendList, responses=ERRORS, tags=["admin"],
            dependencies=readers)
def list_frontends(fleet: FleetDep):
    return fleet.list_frontends()


@router.post("/v1/frontends/{name}/drain", response_model=schemas.FrontendView, responses=ERRORS,
             tags=["admin"], dependencies=admin_only)
def drain_frontend(name: FrontendName, fleet: FleetDep):
    """Stop assigning printers to the frontend and move its printers away in batches."""
    return fleet.set_draining(name, True)


@router.post("/v1/frontends/{name}/undrain", response_model=schemas.FrontendView, responses=ERRORS,
             tags=["admin"], dependencies=admin_only)
def undrain_frontend(name: FrontendName, fleet: FleetDep):
    """Let the frontend take printers again; printers moved away stay where they are."""
    return fleet.set_draining(name, False)


# -- service endpoints -------------------------------------------------------------------------

@router.get("/healthz", tags=["service"])
async def healthz():
    """Return 200 while the process serves requests; it checks nothing else."""
    return {"status": "ok"}


@router.get("/readyz", tags=["service"], responses={503: {"model": schemas.ErrorBody}})
def readyz(request: Request, fleet: FleetDep):
    """Return 200 when the database responds and an inventory is loaded."""
    try:
        with fleet.db.read() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:
        raise NotReady(f"the database does not respond ({type(exc).__name__}): check the database URL") from None
    inventory = request.app.state.inventory
    return {"status": "ready", "frontends": len(inventory.frontends), "inventory_error": inventory.last_error,
            "monitor_leader": request.app.state.monitor.is_leader if request.app.state.monitor else False}


@router.get("/metrics", tags=["service"], response_class=PlainTextResponse,
            responses={200: {"description": "Prometheus text format"}})
def prometheus_metrics():
    return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

