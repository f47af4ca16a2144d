"""HTTP plumbing of the stand-in controller: the route table and the request handler.

Handlers in controller.py take the store data and a parsed request and
return (status, payload). A handler that writes runs inside a store
transaction, so a failed request leaves the store unchanged.
"""

import json
import os
import re
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler

from . import output

MEDIA_TYPE = "application/zrok.v1+json"


class ApiError(Exception):
    """Raised by a handler to respond with `status` and an optional JSON string payload."""

    def __init__(self, status, message=None):
        super().__init__(message or str(status))
        self.status = status
        self.message = message


def build_routes(controller):
    """Return (method, path pattern, handler, writes) for every API path of `controller`."""
    table = [
        ("GET", "/health", controller.health, False),
        ("GET", "/api/v2/versions", controller.versions, False),
        ("GET", "/api/v2/version", controller.version_text, False),
        ("POST", "/api/v2/clientVersionCheck", controller.client_version_check, False),
        ("GET", "/api/v2/configuration", controller.configuration, False),
        ("POST", "/api/v2/account", controller.create_account, True),
        ("DELETE", "/api/v2/account", controller.delete_account, True),
        ("PATCH", "/api/v2/account", controller.update_account_password, True),
        ("POST", "/api/v2/frontend", controller.create_frontend, True),
        ("GET", "/api/v2/frontends", controller.list_frontends, False),
        ("PATCH", "/api/v2/frontend", controller.update_frontend, True),
        ("DELETE", "/api/v2/frontend", controller.delete_frontend, True),
        ("POST", "/api/v2/identity", controller.create_identity, True),
        ("DELETE", "/api/v2/identity", controller.delete_identity, True),
        ("POST", "/api/v2/namespace", controller.create_namespace, True),
        ("GET", "/api/v2/namespaces", controller.list_namespaces, False),
        ("DELETE", "/api/v2/namespace", controller.delete_namespace, True),
        ("POST", "/api/v2/namespace/frontend/mapping", controller.add_namespace_frontend_mapping, True),
        ("DELETE", "/api/v2/namespace/frontend/mapping", controller.remove_namespace_frontend_mapping, True),
        ("GET", "/api/v2/namespace/frontend/mapping/{namespaceToken}", controller.list_namespace_frontend_mappings, False),
        ("GET", "/api/v2/frontend/namespace/mapping/{frontendToken}", controller.list_frontend_namespace_mappings, False),
        ("GET", "/api/v2/name/{namespaceToken}/{name}", controller.get_name, False),
        ("POST", "/api/v2/enable", controller.enable, True),
        ("POST", "/api/v2/disable", controller.disable, True),
        ("GET", "/api/v2/environments", controller.list_environments, False),
        ("POST", "/api/v2/share/name", controller.create_share_name, True),
        ("DELETE", "/api/v2/share/name", controller.delete_share_name, True),
        ("GET", "/api/v2/share/names", controller.list_all_names, False),
        ("GET", "/api/v2/share/names/{namespaceToken}", controller.list_names_for_namespace, False),
        ("GET", "/api/v2/share/namespaces", controller.list_share_namespaces, False),
        ("POST", "/api/v2/share", controller.share, True),
        ("DELETE", "/api/v2/unshare", controller.unshare, True),
        ("GET", "/api/v2/shares", controller.list_shares, False),
        ("GET", "/api/v2/detail/share/{shareToken}", controller.share_detail, False),
        ("GET", "/api/v2/overview", controller.overview, False),
        ("GET", "/standin/v1/frontend-lookup", controller.frontend_lookup, False),
    ]
    routes = []
    for method, template, function, writes in table:
        pattern = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$")
        routes.append((method, pattern, function, writes))
    return routes


class _Request:
    def __init__(self, token, body, query, client_address):
        self.token = token
        self.body = body
        self.query = query
        self.client_address = client_address


class RequestHandler(BaseHTTPRequestHandler):
    """Dispatches a request to the controller handler of its route, inside a store transaction when it writes."""

    controller = None
    server_version = "zrok2-standin"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        # Request lines carry no secrets (tokens travel in headers and bodies).
        output.log("debug", format % args, stream=_DebugSink)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def _dispatch(self, method):
        parsed = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            self._answer(400, "request body is not valid JSON")
            return
        client = self.client_address[0] if isinstance(self.client_address, tuple) else str(self.client_address)
        request = _Request(self.headers.get("X-TOKEN"), body, query, client)
        for route_method, pattern, function, writes in self.controller.routes:
            match = pattern.match(parsed.path)
            if not match or route_method != method:
                continue
            store = self.controller.store
            try:
                if writes:
                    with store.transaction() as data:
                        status, payload = function(data, request, **match.groupdict())
                else:
                    with store.lock:
                        status, payload = function(store.read(), request, **match.groupdict())
            except ApiError as exc:
                status, payload = exc.status, exc.message
            except Exception as exc:  # noqa: BLE001 - answer 500 like the real controller, and log why
                output.error(f"error handling {method} {parsed.path}: {exc!r}")
                status, payload = 500, None
            self._answer(status, payload, html=parsed.path == "/health")
            return
        self._answer(404, "path not found")

    def _answer(self, status, payload, html=False):
        if payload is None:
            body = b""
        elif html:
            body = payload.encode()
        else:
            body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8" if html else MEDIA_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _DebugSink:
    """Discards per-request access lines unless ZROK2_STANDIN_DEBUG is set."""

    @staticmethod
    def isatty():
        return False

    @staticmethod
    def write(text):
        if os.environ.get("ZROK2_STANDIN_DEBUG"):
            sys.stderr.write(text)

    @staticmethod
    def flush():
        pass
