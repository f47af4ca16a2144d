"""A small fake of the zrok v2 controller API and a frontend's health endpoint, on loopback.

It implements what the control server calls: `POST /api/v2/account` (admin secret in
`X-TOKEN`), `GET /api/v2/versions` and `GET /healthz`, under any path prefix, so one fake can
stand in for several frontends. Tests make it fail through `admin_secret`, `healthy` and
`account_status` (a status such as 502 that account creation returns).
"""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeZrok:
    def __init__(self, admin_secret: str, host: str = "127.0.0.1") -> None:
        self.admin_secret = admin_secret
        self.accounts: dict[str, str] = {}
        self.account_requests = 0
        self.healthy = True
        self.account_status: int | None = None
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _reply(self, status: int, body: dict | None = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/zrok.v1+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if not fake.healthy:
                    self._reply(502, {"message": "down"})
                elif self.path.endswith("/api/v2/versions"):
                    self._reply(200, {"controllerVersion": "v2.0.8-fake"})
                elif self.path.endswith("/healthz"):
                    self._reply(200, {"status": "ok"})
                else:
                    self._reply(404)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self.path.endswith("/api/v2/account"):
                    self._reply(404)
                    return
                if fake.account_status is not None:
                    self._reply(fake.account_status, {"message": "controller unavailable"})
                    return
                if self.headers.get("X-TOKEN") != fake.admin_secret:
                    self._reply(401)
                    return
                with fake.lock:
                    fake.account_requests += 1
                    email = body.get("email")
                    if not email or not body.get("password"):
                        self._reply(400)
                        return
                    if email in fake.accounts:
                        self._reply(409)
                        return
                    token = secrets.token_hex(12)
                    fake.accounts[email] = token
                self._reply(201, {"accountToken": token})

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}"
        # A short poll interval: shutdown() waits for the next poll, and every test stops two fakes.
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def __enter__(self) -> FakeZrok:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
