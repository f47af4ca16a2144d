"""ASGI middleware: request body limit, latency histogram and error logging in one pass."""

from __future__ import annotations

import json
import logging
import time

from controlserver import metrics

log = logging.getLogger("controlserver.http")


class BodyTooLarge(Exception):
    pass


class RequestMiddleware:
    def __init__(self, app, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        status_holder = {"status": 500, "started": False}
        declared = _content_length(scope)
        received = 0
        exceeded = False

        async def send_unless_exceeded(message) -> None:
            if exceeded:
                # The framework caught BodyTooLarge while reading the body (FastAPI turns any
                # error there into a 400), so send the 413 in place of its response.
                if message["type"] == "http.response.start" and not status_holder["started"]:
                    await self._send_too_large(record_and_send)
                return
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
            await send(message)

        async def record_and_send(message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
            await send(message)

        async def receive_limited():
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    exceeded = True
                    raise BodyTooLarge
            return message

        try:
            if declared is not None and declared > self.max_body_bytes:
                raise BodyTooLarge
            await self.app(scope, receive_limited, send_unless_exceeded)
        except BodyTooLarge:
            if status_holder["started"]:
                raise
            await self._send_too_large(record_and_send)
        finally:
            status = status_holder["status"]
            route = scope.get("route")
            route_path = getattr(route, "path", "unmatched")
            duration = time.perf_counter() - started
            metrics.child(metrics.REQUEST_DURATION, scope["method"], route_path, str(status)).observe(duration)
            if status >= 500:
                log.warning("request failed", extra={"method": scope["method"], "path": scope["path"],
                                                     "status": status, "duration_ms": round(duration * 1000, 1)})

    async def _send_too_large(self, send) -> None:
        body = json.dumps({
            "error": "body_too_large",
            "message": f"the request body exceeds {self.max_body_bytes} bytes: send a smaller body",
        }).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
