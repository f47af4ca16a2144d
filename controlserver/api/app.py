"""The FastAPI application: startup, inventory reloads, the monitor task and error mapping."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import signal
from pathlib import Path

import anyio
import watchfiles
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from controlserver import __version__, metrics
from controlserver.api.middleware import RequestMiddleware
from controlserver.api.ratelimit import RateLimitMiddleware, TokenRateLimiter
from controlserver.api.routes import agent_router, router
from controlserver.api.schemas import NO_NUL_PATTERN, NUL_MESSAGE, PRINTER_ID_RULE
from controlserver.core.db import Database, GroupCommit, TransactionPerCall
from controlserver.core.roles import TokenRegistry
from controlserver.core.settings import Settings, load_zrok_admin_secrets, secrets_file_too_open
from controlserver.dashboard import DASHBOARD_PATH, create_dashboard
from controlserver.errors import FleetError, InventoryError, ZrokAccountFailed
from controlserver.inventory import FrontendConfig, load_inventory
from controlserver.services.fleet import Fleet
from controlserver.services.monitor import Monitor
from controlserver.services.printer_health import read_printer_health
from controlserver.services.zrok import ZrokAdmin

log = logging.getLogger(__name__)

GC_FIRST_GENERATION_THRESHOLD = 10_000


class InventoryState:
    """The inventory in force and the last rejection, if the newest file was rejected."""

    def __init__(self, settings: Settings, fleet: Fleet, tokens: TokenRegistry | None = None) -> None:
        self.settings = settings
        self.fleet = fleet
        self.tokens = tokens
        self.frontends: dict[str, FrontendConfig] = {}
        self.last_error: str | None = None

    def reload(self) -> bool:
        """Load the inventory and secrets file; on any error keep what is in force and return False."""
        path = self.settings.inventory
        try:
            frontends = load_inventory(path)
        except InventoryError as exc:
            self.last_error = str(exc)
            metrics.INVENTORY_RELOADS.labels(result="rejected").inc()
            log.error("inventory rejected; the last good inventory stays in force",
                      extra={"inventory": str(path), "error": str(exc)})
            return False

        self.fleet.sync_frontends(frontends)
        self.frontends = frontends
        self.last_error = None
        metrics.INVENTORY_RELOADS.labels(result="ok").inc()
        log.info("inventory loaded", extra={"inventory": str(path), "count": len(frontends)})
        self.reload_secrets()
        return True

    def reload_secrets(self) -> None:
        path = self.settings.secrets_file
        try:
            secrets = load_zrok_admin_secrets(path)
        except (OSError, ValueError) as exc:
            log.error("secrets file rejected; the secrets in force stay", extra={"error": str(exc)})
            return
        if not path.exists():
            log.warning("secrets file not found: no frontend gets printers until it has a zrok admin secret",
                        extra={"error": str(path)})
        elif secrets_file_too_open(path):
            log.warning("secrets file is readable by group or others: chmod 0600 it", extra={"error": str(path)})
        self.fleet.zrok.set_admin_secrets(secrets)
        for name in self.frontends:
            if name not in secrets:
                log.warning("frontend has no zrok admin secret and gets no printers", extra={"frontend": name})
        self.reload_operator_tokens()

    def reload_operator_tokens(self) -> None:
        if self.tokens is None or self.settings.operator_tokens_file is None:
            return
        try:
            self.tokens.set_operators(self.settings.load_operator_tokens())
        except ValueError as exc:
            log.error("operator tokens rejected; the operator tokens in force stay", extra={"error": str(exc)})
            return
        log.info("operator tokens loaded", extra={"count": len(self.tokens.operator_names)})


def create_app(settings: Settings, settle_gc: bool = False) -> FastAPI:
    """Build the app. With `settle_gc`, tune the garbage collector after start-up (for `serve`, not for tests)."""
    tokens = TokenRegistry(settings.require_admin_token(), settings.load_operator_tokens())
    db = Database(settings.database_url)
    zrok = ZrokAdmin({}, email_domain=settings.zrok_account_email_domain, ca_file=settings.ca_file,
                     timeout_s=settings.zrok_timeout_s)
    fleet = Fleet(db, settings, zrok)
    inventory = InventoryState(settings, fleet, tokens)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await anyio.to_thread.run_sync(db.migrate)
        if not await anyio.to_thread.run_sync(inventory.reload):
            raise SystemExit(f"inventory {settings.inventory} is invalid: {inventory.last_error}")
        metrics.FLEET.read_counts = fleet.counts
        metrics.FLEET.read_printer_health = functools.partial(
            read_printer_health, db, settings.heartbeat_overdue_after_s)

        tasks = []
        if settings.watch_inventory:
            tasks.append(asyncio.create_task(_watch_inventory(inventory), name="inventory-watch"))
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, lambda: tasks.append(
                asyncio.create_task(_reload_in_thread(inventory, "SIGHUP"))))
            sighup = True
        except (RuntimeError, ValueError):
            # Only the main thread can take signals, e.g. not under a test client.
            sighup = False
        if app.state.monitor is not None:
            tasks.append(asyncio.create_task(app.state.monitor.run(), name="monitor"))
        db.start_checkpointer()
        if settle_gc:
            _settle_garbage_collector()
        log.info("control server started", extra={"listen": settings.listen,
                                                  "database": db.url.render_as_string(hide_password=True)})
        try:
            yield
        finally:
            if sighup:
                loop.remove_signal_handler(signal.SIGHUP)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            app.state.writer.close()
            db.dispose()
            log.info("control server stopped")

    app = FastAPI(
        title="printer-fleet control server",
        version=__version__,
        summary="Enrollment, assignment of printers to zrok frontends, health and moves.",
        lifespan=lifespan,
        # The server exports Prometheus metrics (/metrics), not OpenTelemetry. With telemetry on,
        # FastAPI looks up the global OpenTelemetry providers (environment reads included) on
        # every request: 6 % of the event loop's time in a py-spy profile of bench/registration_storm.py.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.fleet = fleet
    app.state.inventory = inventory
    app.state.tokens = tokens
    app.state.monitor = Monitor(fleet) if settings.monitor_enabled else None
    # Registrations and heartbeats go through the writer: on SQLite the event loop commits the
    # queued ones together, on PostgreSQL a pool of threads with a transaction each.
    app.state.writer = GroupCommit(db) if db.is_sqlite else TransactionPerCall(db)
    app.include_router(agent_router)
    app.include_router(router)
    _install_error_handlers(app)
    dashboard = create_dashboard(settings, fleet, tokens.admin_hash)
    _install_error_handlers(dashboard)
    app.mount(DASHBOARD_PATH, dashboard)
    # Added first, so it runs inside RequestMiddleware, which then counts and times the 429s too.
    app.add_middleware(RateLimitMiddleware, tokens=tokens, limiter=TokenRateLimiter({
        "admin": settings.rate_limit_admin_per_minute,
        "enrollment": settings.rate_limit_enrollment_per_minute,
        "printer": settings.rate_limit_printer_per_minute,
    }))
    app.add_middleware(RequestMiddleware, max_body_bytes=settings.max_body_bytes)
    return app


def _settle_garbage_collector() -> None:
    """Keep the cyclic garbage collector off the objects that live as long as the process.

    After start-up the process contains the objects of its modules, the app and SQLAlchemy's
    metadata, and every full collection walked them all. gc.freeze() moves them to a generation
    that is never collected. A first-generation threshold of 10,000 allocations instead of 700
    makes collections rarer, and most of a request's objects are freed by reference counting. In
    bench/registration_storm.py this lowered the p99 latency of registrations from about 200 to
    about 110 ms and their CPU time by about a tenth.
    """
    gc.collect()
    gc.freeze()
    _first, second, third = gc.get_threshold()
    gc.set_threshold(GC_FIRST_GENERATION_THRESHOLD, second, third)


async def _reload_in_thread(inventory: InventoryState, trigger: str) -> None:
    log.info("inventory reload requested", extra={"reason": trigger})
    await anyio.to_thread.run_sync(inventory.reload)


async def _watch_inventory(inventory: InventoryState) -> None:
    """Reload when the inventory file, or any file under the inventory directory, changes."""
    path: Path = inventory.settings.inventory.resolve()
    watched = path if path.is_dir() else path.parent

    def relevant(_change, changed: str) -> bool:
        return path.is_dir() or Path(changed) == path

    try:
        async for _changes in watchfiles.awatch(watched, watch_filter=relevant, debounce=500, step=100):
            await _reload_in_thread(inventory, "file change")
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("inventory watch stopped; reload with SIGHUP", extra={"inventory": str(path)})


def _error(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    """Map every error to `{"error", "message"}` JSON, the one place where statuses are chosen."""

    @app.exception_handler(FleetError)
    async def fleet_error(request: Request, exc: FleetError) -> JSONResponse:
        if isinstance(exc, ZrokAccountFailed):
            log.error("zrok account creation failed", extra={"error": exc.message})
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if exc.status == 503:
            headers = {"Retry-After": "30"}
        return _error(exc.status, exc.code, exc.message, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":
            return _error(400, "malformed_json",
                          f"the request body is not valid JSON ({first.get('ctx', {}).get('error', 'parse error')}): "
                          "send a JSON object")
        location = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
        if first.get("ctx", {}).get("pattern") == NO_NUL_PATTERN:
            return _error(422, "invalid_request", f"{location}: {NUL_MESSAGE}")
        if first.get("loc", ())[-1:] == ("printer_id",) and first.get("type") != "missing":
            shown = repr(first.get("input"))
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            return _error(422, "invalid_request", f"printer_id {shown} is invalid: {PRINTER_ID_RULE}")
        return _error(422, "invalid_request", f"{location}: {first.get('msg', 'invalid value')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}; see /openapi.json"
        return _error(exc.status_code, codes.get(exc.status_code, "http_error"), message)

    @app.exception_handler(OperationalError)
    async def database_error(request: Request, exc: OperationalError) -> JSONResponse:
        log.error("database error", extra={"method": request.method, "path": request.url.path,
                                           "error": type(exc.orig).__name__,
                                           # The driver's message, without the statement and its parameters.
                                           "detail": str(exc.orig).splitlines()[0][:200] if str(exc.orig) else ""})
        return _error(503, "database_unavailable", "the database is unavailable: retry with backoff",
                      {"Retry-After": "10"})

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", extra={"method": request.method, "path": request.url.path})
        return _error(500, "internal_error", "the control server failed unexpectedly: see its log")
