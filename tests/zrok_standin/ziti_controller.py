"""The stand-in OpenZiti controller (`ziti controller run <config.yml>`): a management API.

It keeps the entities that the frontend role and the zrok stand-in create
(identities, services, policies, edge routers, configs) in a JSON file at the
config's `db` path and serves them under `/edge/management/v1/<type>` with
OpenZiti's envelope (`{"data": ..., "meta": ...}`) and `zt-session` tokens.

NOTE: the stand-in serves plain HTTP on the web bind point (default
0.0.0.0:1280) although an `https://` URL names it, and it enforces none of
the policies it stores. Terminators are not tracked, so
`ziti edge list terminators` returns an empty list.
"""

import hashlib
import hmac
import json
import re
import secrets
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import ZITI_VERSION, output, relay, yamlsubset
from .store import Store

ENTITY_TYPES = (
    "identities",
    "services",
    "edge-routers",
    "edge-router-policies",
    "service-edge-router-policies",
    "service-policies",
    "configs",
    "config-types",
    "terminators",
)
_FILTER_TERM = re.compile(r'([\w.]+)\s*=\s*"([^"]*)"')


def load_config(path):
    cfg = yamlsubset.load_file(path)
    if not isinstance(cfg, dict):
        raise ValueError(f"controller config '{path}' must be a YAML mapping")
    return cfg


def db_path(cfg):
    db = cfg.get("db")
    if isinstance(db, dict):
        db = db.get("path")
    return db or "ctrl.db"


def bind_address(cfg):
    for web in cfg.get("web") or []:
        for point in web.get("bindPoints") or []:
            if point.get("interface"):
                return relay.parse_address(point["interface"], 1280)
    return "0.0.0.0", 1280


def hash_password(password, salt=None):
    salt = salt or secrets.token_hex(8)
    return f"{salt}${hashlib.pbkdf2_hmac('sha256', password.encode(), salt.encode(), 100_000).hex()}"


def check_password(password, stored):
    salt, _, _ = stored.partition("$")
    return hmac.compare_digest(hash_password(password, salt), stored)


def init_edge(cfg, username, password):
    """Create the default admin in the controller's store (`ziti controller edge init`)."""
    store = Store(db_path(cfg))
    with store.transaction() as data:
        if data.get("admin"):
            raise ValueError("edge already initialized: the default admin exists")
        data["admin"] = {"username": username, "password": hash_password(password)}


def _session_hash(token):
    return hashlib.sha256(token.encode()).hexdigest()


def matches(entity, expression):
    """Return whether `entity` satisfies an OpenZiti filter made of `field="value"` terms joined by `and`."""
    expression = re.sub(r"\b(limit|skip)\s+\w+|\bsort by .*$", "", expression or "").strip()
    if expression in ("", "true"):
        return True
    for field, value in _FILTER_TERM.findall(expression):
        current = entity
        for part in field.split("."):
            current = current.get(part) if isinstance(current, dict) else None
        if current != value:
            return False
    return True


class ZitiController:
    def __init__(self, cfg):
        self.cfg = cfg
        self.store = Store(db_path(cfg))

    def authenticate(self, body):
        admin = self.store.read().get("admin")
        if not admin or body.get("username") != admin["username"] or not check_password(body.get("password", ""), admin["password"]):
            return 401, {"error": {"code": "INVALID_AUTH", "message": "The authentication request failed"}}
        token = secrets.token_hex(16)
        # Sessions survive a controller restart, as the role may log in before a handler restarts it.
        # Only their hashes are stored.
        with self.store.transaction() as data:
            data.setdefault("sessions", {})[_session_hash(token)] = time.time()
        return 200, {"data": {"token": token, "identity": {"name": admin["username"]}}, "meta": {}}

    def authorized(self, token):
        if not token:
            return False
        with self.store.lock:
            return _session_hash(token) in self.store.read().get("sessions", {})

    def list(self, kind, query):
        with self.store.lock:
            entities = [e for e in self.store.read().setdefault(kind, []) if matches(e, query.get("filter"))]
        return 200, {"data": entities, "meta": {"pagination": {"limit": 10000, "offset": 0, "totalCount": len(entities)}}}

    def create(self, kind, body):
        with self.store.transaction() as data:
            records = data.setdefault(kind, [])
            if body.get("name") and any(e.get("name") == body["name"] for e in records):
                return 400, {"error": {"code": "COULD_NOT_VALIDATE", "message": f"duplicate value '{body['name']}' in unique index on {kind} store", "cause": {"field": "name", "value": body["name"]}}}
            entity = dict(body)
            entity.setdefault("id", secrets.token_urlsafe(8).replace("-", "x").replace("_", "y"))
            entity["createdAt"] = entity["updatedAt"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            records.append(entity)
        return 201, {"data": {"id": entity["id"], "_links": {}}, "meta": {}}

    def find(self, kind, key):
        for entity in self.store.read().setdefault(kind, []):
            if entity.get("id") == key or entity.get("name") == key:
                return entity
        return None

    def delete(self, kind, key):
        with self.store.transaction() as data:
            entity = self.find(kind, key)
            if entity is None:
                return 404, {"error": {"code": "NOT_FOUND", "message": f"no {kind} with id '{key}'"}}
            data[kind].remove(entity)
        return 200, {"data": {}, "meta": {}}

    def update(self, kind, key, body):
        with self.store.transaction() as data:
            entity = self.find(kind, key)
            if entity is None:
                return 404, {"error": {"code": "NOT_FOUND", "message": f"no {kind} with id '{key}'"}}
            entity.update(body)
        return 200, {"data": {}, "meta": {}}

    def serve_forever(self):
        host, port = bind_address(self.cfg)
        controller = self

        class Handler(_Handler):
            pass

        Handler.controller = controller
        httpd = ThreadingHTTPServer((host, port), Handler)
        httpd.daemon_threads = True
        if not self.store.read().get("admin"):
            output.warn("the edge is not initialized; run 'ziti controller edge init <config> -u <user> -p <password>'")
        output.info(f"OpenZiti controller stand-in v{ZITI_VERSION} (not OpenZiti) listening on {host}:{port}")
        httpd.serve_forever()


class _Handler(BaseHTTPRequestHandler):
    controller = None
    protocol_version = "HTTP/1.1"
    server_version = "ziti-standin"

    def log_message(self, format, *args):
        pass

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw.strip() else {}

    def _route(self, method):
        parsed = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        parts = [p for p in parsed.path.split("/") if p]
        try:
            body = self._body()
        except ValueError:
            return self._answer(400, {"error": {"code": "COULD_NOT_PARSE_BODY", "message": "invalid JSON"}})
        if parsed.path in ("/version", "/edge/client/v1/version", "/edge/management/v1/version"):
            return self._answer(200, {"data": {"version": f"v{ZITI_VERSION}", "buildDate": "standin", "revision": "standin"}, "meta": {}})
        if parts[:3] == ["edge", "management", "v1"] and len(parts) >= 4:
            kind = parts[3]
            if kind == "authenticate" and method == "POST":
                return self._answer(*self.controller.authenticate(body))
            if not self.controller.authorized(self.headers.get("zt-session")):
                return self._answer(401, {"error": {"code": "UNAUTHORIZED", "message": "The request could not be completed. The session is not authorized or the credentials are invalid"}})
            if kind in ENTITY_TYPES:
                key = urllib.parse.unquote(parts[4]) if len(parts) > 4 else None
                if method == "GET" and key is None:
                    return self._answer(*self.controller.list(kind, query))
                if method == "GET":
                    with self.controller.store.lock:
                        entity = self.controller.find(kind, key)
                    return self._answer(200, {"data": entity, "meta": {}}) if entity else self._answer(404, {"error": {"code": "NOT_FOUND"}})
                if method == "POST" and key is None:
                    return self._answer(*self.controller.create(kind, body))
                if method == "DELETE" and key:
                    return self._answer(*self.controller.delete(kind, key))
                if method in ("PATCH", "PUT") and key:
                    return self._answer(*self.controller.update(kind, key, body))
        return self._answer(404, {"error": {"code": "NOT_FOUND", "message": f"no route for {method} {parsed.path}"}})

    def _answer(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def do_DELETE(self):
        self._route("DELETE")

    def do_PATCH(self):
        self._route("PATCH")

    def do_PUT(self):
        self._route("PUT")
