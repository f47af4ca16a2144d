"""Per-token rate limits: 429 with `Retry-After` when one token sends too many requests.

Each bearer token gets a token bucket of its own, keyed by the token's SHA-256 hash, and the
token itself is never kept. The bucket arithmetic is pyrate-limiter's TokenBucket (GCRA)
algorithm. This module only stores one state per key, because pyrate-limiter's in-memory buckets
hold one state per bucket and would need a bucket object and a lock per printer. The limits apply
per process, so N replicas together admit up to N times the configured rate.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time

from pyrate_limiter import Duration, Rate, TokenBucket

from controlserver.core.roles import TokenRegistry
from controlserver.core.security import ENROLLMENT_TOKEN_PREFIX, PRINTER_TOKEN_PREFIX

# Once this many keys are stored, the buckets that refilled completely are dropped. A full bucket
# decides the same as a missing one, so dropping it changes no decision.
SWEEP_AT_KEYS = 10_000


class TokenRateLimiter:
    """Token buckets per token kind and key; `limits` maps each kind to its requests per minute.

    A bucket has room for as many requests as its kind's limit, so a full minute's worth may come at once.
    """

    def __init__(self, limits: dict[str, int]) -> None:
        self._rates = {kind: [Rate(limit, Duration.MINUTE)] for kind, limit in limits.items() if limit > 0}
        self._algorithm = TokenBucket()
        self._states: dict[tuple[str, str], tuple] = {}
        self._lock = threading.Lock()

    def check(self, kind: str, key: str) -> int:
        """Take one request from the key's bucket; return 0 if allowed, else the seconds to wait."""
        rates = self._rates.get(kind)
        if rates is None:
            return 0
        now_ms = int(time.time() * 1000)
        with self._lock:
            state = self._states.get((kind, key)) or self._algorithm.initial(rates)
            new_state, decision = self._algorithm.step(rates, state, now_ms, 1)
            if decision.allowed:
                self._states[(kind, key)] = new_state
                if len(self._states) >= SWEEP_AT_KEYS:
                    self._sweep(now_ms)
                return 0
        return max(1, math.ceil((decision.retry_after_ms or 1000) / 1000))

    def _sweep(self, now_ms: int) -> None:
        now_us = now_ms * 1000
        self._states = {key: state for key, state in self._states.items() if max(state) > now_us}


class RateLimitMiddleware:
    """Reject with 429 a bearer token that exceeds the limit of its kind (admin, enrollment, printer).

    Requests without a bearer token are not limited here, and the routes that need one reject them with 401.
    """

    def __init__(self, app, limiter: TokenRateLimiter, tokens: TokenRegistry) -> None:
        self.app = app
        self.limiter = limiter
        self.tokens = tokens

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = _bearer_token(scope)
        if token:
            kind = self._kind(token)
            key = hashlib.sha256(token.encode()).hexdigest()
            wait_s = self.limiter.check(kind, key)
            if wait_s:
                await _send_too_many(send, kind, wait_s)
                return
        await self.app(scope, receive, send)

    def _kind(self, token: str) -> str:
        if token.startswith(PRINTER_TOKEN_PREFIX):
            return "printer"
        if token.startswith(ENROLLMENT_TOKEN_PREFIX):
            return "enrollment"
        # The admin and every operator token get the admin limit, each in a bucket of its own.
        if self.tokens.identify(token) is not None:
            return "admin"
        # Unknown tokens get the printer limit, each in a bucket of its own.
        return "printer"


def _bearer_token(scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
            return None
    return None


async def _send_too_many(send, kind: str, wait_s: int) -> None:
    body = json.dumps({
        "error": "rate_limited",
        "message": f"too many requests with this {kind} token: retry after {wait_s} s "
                   f"(the limit is set by FLEET_RATE_LIMIT_{kind.upper()}_PER_MINUTE)",
    }).encode()
    await send({"type": "http.response.start", "status": 429,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"retry-after", str(wait_s).encode())]})
    await send({"type": "http.response.body", "body": body})
