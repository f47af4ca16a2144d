"""Local HTTP servers that play a printer's Moonraker behind a share."""

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    label = "server"

    def log_message(self, format, *args):
        pass

    def _send_json(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.headers.get("Upgrade", "").lower() == "websocket":
            self._echo_upgraded()
            return
        self._send_json(
            200,
            {
                "server": self.label,
                "path": self.path,
                "host": self.headers.get("Host"),
                "x_forwarded_for": self.headers.get("X-Forwarded-For"),
                "x_real_ip": self.headers.get("X-Real-Ip"),
                "x_proxy": self.headers.get("X-Proxy"),
            },
        )

    def do_POST(self):
        # Read the body in blocks so the server itself never holds the whole upload.
        remaining = int(self.headers.get("Content-Length") or 0)
        digest = hashlib.sha256()
        received = 0
        while remaining > 0:
            block = self.rfile.read(min(remaining, 1 << 20))
            if not block:
                break
            digest.update(block)
            received += len(block)
            remaining -= len(block)
        self._send_json(200, {"server": self.label, "received": received, "sha256": digest.hexdigest()})

    def _echo_upgraded(self):
        # A minimal upgrade: after 101 the server echoes every line it receives.
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.end_headers()
        self.wfile.flush()
        while True:
            line = self.rfile.readline()
            if not line:
                break
            self.wfile.write(b"echo:" + line)
            self.wfile.flush()
        self.close_connection = True


class LocalServer:
    """A threaded HTTP server on 127.0.0.1 that labels its responses with `label`."""

    def __init__(self, label):
        handler = type("Handler", (_Handler,), {"label": label})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
