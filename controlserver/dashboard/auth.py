"""Dashboard login: a signed session cookie after the admin token was entered, or the token itself.

The cookie is Starlette's SessionMiddleware cookie (itsdangerous-signed JSON, HttpOnly,
SameSite=Strict, Secure when the server serves TLS). It contains no secret: a fingerprint of the
admin token's hash, so that changing the admin token logs every session out, and a CSRF token
for the logout form.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request

from controlserver.core.security import token_matches
from controlserver.errors import AuthenticationFailed

SESSION_COOKIE = "fleet_dashboard"
# NOTE: sessions live only in the signed cookie, so logout deletes it from the browser, but a copy
# taken before stays valid until it expires. Changing the admin token or the session secret ends
# every session at once.
SESSION_MAX_AGE_S = 8 * 3600


def session_fingerprint(admin_token_hash: str) -> str:
    """Derive the value that marks a session as logged in with the current admin token."""
    return hashlib.sha256(b"printer-fleet dashboard session:" + admin_token_hash.encode()).hexdigest()


def log_in(request: Request) -> None:
    """Start a fresh session for the admin, dropping whatever the old cookie held."""
    request.session.clear()
    request.session["admin"] = request.app.state.session_fingerprint
    request.session["csrf"] = secrets.token_urlsafe(32)


def log_out(request: Request) -> None:
    request.session.clear()


def logged_in(request: Request) -> bool:
    """Tell whether the request carries a session cookie made with the current admin token."""
    return hmac.compare_digest(str(request.session.get("admin", "")), request.app.state.session_fingerprint)


def csrf_token(request: Request) -> str:
    return str(request.session.get("csrf", ""))


def csrf_matches(request: Request, presented: str | None) -> bool:
    expected = csrf_token(request)
    return bool(expected) and presented is not None and hmac.compare_digest(presented, expected)


def bearer_is_admin(request: Request) -> bool | None:
    """Check an `Authorization: Bearer` header: None without one, else whether it is the admin token."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and token_matches(token.strip(), request.app.state.admin_token_hash)


def authenticated(request: Request) -> bool:
    """Tell whether the request comes from the admin: a valid bearer token, else a valid session.

    A wrong bearer token fails even with a valid session, so a script never runs on a browser's
    session by accident.
    """
    bearer = bearer_is_admin(request)
    if bearer is not None:
        return bearer
    return logged_in(request)


async def require_admin(request: Request) -> None:
    """FastAPI dependency of the data endpoints: 401 JSON unless authenticated."""
    if not authenticated(request):
        raise AuthenticationFailed(
            "not logged in: log in at /dashboard/login or send `Authorization: Bearer <admin token>`")
