"""The dashboard as a FastAPI application that the control server mounts at DASHBOARD_PATH.

It is a sub-application so that its session middleware runs only for dashboard requests and
adds nothing to the agents' registration and heartbeat path.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Annotated, Literal

import anyio
from fastapi import Depends, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware

from controlserver.api.schemas import PRINTER_ID_PATTERN
from controlserver.core.security import token_matches
from controlserver.core.settings import Settings
from controlserver.dashboard import auth, schemas, views
from controlserver.services.fleet import Fleet

log = logging.getLogger(__name__)

DASHBOARD_PATH = "/dashboard"
# How often the page polls the data endpoints, in seconds.
REFRESH_S = 3
PACKAGE_DIR = Path(__file__).resolve().parent
MAX_TOKEN_LENGTH = 1024

# Everything the page loads comes from this server; no inline script or style runs.
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
     b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]

ShareStateFilter = Literal["active", "starting", "stopped", "failed", "none", "unreported"]


class SecurityHeaders:
    """Add SECURITY_HEADERS to every response, and `Cache-Control: no-store` outside /static."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith(f"{scope.get('root_path', '')}/static/")

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(SECURITY_HEADERS)
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_dashboard(settings: Settings, fleet: Fleet, admin_token_hash: str) -> FastAPI:
    """Build the dashboard application; the caller mounts it and installs the error handlers."""
    dashboard = FastAPI(title="printer-fleet dashboard", openapi_url=None, docs_url=None, redoc_url=None)
    dashboard.state.fleet = fleet
    dashboard.state.admin_token_hash = admin_token_hash
    dashboard.state.session_fingerprint = auth.session_fingerprint(admin_token_hash)
    templates = Jinja2Templates(directory=PACKAGE_DIR / "templates")

    if settings.session_secret is not None:
        session_secret = settings.session_secret.get_secret_value()
    else:
        session_secret = secrets.token_urlsafe(32)
        log.info("no FLEET_SESSION_SECRET set: dashboard sessions end when the server restarts")
    dashboard.add_middleware(
        SessionMiddleware, secret_key=session_secret, session_cookie=auth.SESSION_COOKIE,
        max_age=auth.SESSION_MAX_AGE_S, path=DASHBOARD_PATH, same_site="strict",
        https_only=settings.tls_cert is not None,
    )
    dashboard.add_middleware(SecurityHeaders)
    dashboard.mount("/static", StaticFiles(directory=PACKAGE_DIR / "static"), name="static")

    def login_page(request: Request, error: str | None = None, status_code: int = 200) -> HTMLResponse:
        return templates.TemplateResponse(request, "login.html", {"error": error}, status_code=status_code)

    @dashboard.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page(request: Request) -> Response:
        if not auth.authenticated(request):
            return RedirectResponse(request.url_for("login_form").path, status_code=303)
        return templates.TemplateResponse(request, "dashboard.html", {
            "csrf_token": auth.csrf_token(request),
            "session": auth.logged_in(request),
            "refresh_s": REFRESH_S,
        })

    @dashboard.get("/login", response_class=HTMLResponse, include_in_schema=False)
    async def login_form(request: Request) -> Response:
        if auth.logged_in(request):
            return RedirectResponse(request.url_for("page").path, status_code=303)
        return login_page(request)

    @dashboard.post("/login", response_class=HTMLResponse, include_in_schema=False)
    async def login(request: Request, token: Annotated[str, Form(max_length=MAX_TOKEN_LENGTH)] = "") -> Response:
        client = request.client.host if request.client else None
        if not token.strip():
            return login_page(request, "Enter the admin token (FLEET_ADMIN_TOKEN).", status_code=400)
        if not token_matches(token.strip(), request.app.state.admin_token_hash):
            log.warning("dashboard login rejected: wrong admin token", extra={"host": client})
            return login_page(request, "That is not the admin token. Use the value of FLEET_ADMIN_TOKEN.",
                              status_code=401)
        auth.log_in(request)
        log.info("dashboard login", extra={"host": client})
        return RedirectResponse(request.url_for("page").path, status_code=303)

    @dashboard.post("/logout", include_in_schema=False)
    async def logout(request: Request, csrf: Annotated[str, Form(max_length=256)] = "") -> Response:
        if auth.logged_in(request) and not auth.csrf_matches(request, csrf):
            log.warning("dashboard logout rejected: missing or wrong CSRF token",
                        extra={"host": request.client.host if request.client else None})
            return HTMLResponse("Logout rejected: reload the dashboard and use its Log out button.",
                                status_code=403)
        auth.log_out(request)
        return RedirectResponse(request.url_for("login_form").path, status_code=303)

    admin_only = [Depends(auth.require_admin)]

    @dashboard.get("/api/overview", response_model=schemas.Overview, dependencies=admin_only)
    async def overview(request: Request):
        return await anyio.to_thread.run_sync(views.overview, request.app.state.fleet)

    @dashboard.get("/api/printers", response_model=schemas.PrinterPage, dependencies=admin_only)
    async def printers(
        request: Request,
        region: Annotated[str | None, Query(max_length=128)] = None,
        frontend: Annotated[str | None, Query(max_length=128)] = None,
        share_state: ShareStateFilter | None = None,
        klippy_state: Annotated[str | None, Query(max_length=32)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        after: Annotated[str | None, Query(pattern=PRINTER_ID_PATTERN)] = None,
    ):
        filters = views.PrinterFilter(region or None, frontend or None, share_state, klippy_state or None)
        return await anyio.to_thread.run_sync(views.printers, request.app.state.fleet, filters, limit, after)

    @dashboard.get("/api/events", response_model=schemas.EventList, dependencies=admin_only)
    async def events(
        request: Request,
        after: Annotated[int | None, Query(ge=0, description="event id to continue after")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ):
        return await anyio.to_thread.run_sync(views.events, request.app.state.fleet, after, limit)

    return dashboard
