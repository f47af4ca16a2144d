"""The stand-in public frontend (`zrok2 access dynamicProxy <frontend.yml>`).

Like zrok's dynamicProxy frontend it routes each request by its `Host`
header (port stripped): `<name>.<namespace name>` selects the share that
has that name in a namespace mapped to this frontend's `frontend_token`.
It enforces the share's basic auth (401 with `WWW-Authenticate`) and returns
404 for unknown names and 502 when the share's host is unreachable. It adds
`X-Proxy: zrok` and appends the client address to `X-Forwarded-For`, as Go's
reverse proxy does. The other end-to-end request headers pass through
unchanged, while hop-by-hop headers such as `Connection` are dropped.

The request goes to the share through the edge router (see relay.py); each
client connection carries one request, so the frontend closes it after the
response. Bodies are streamed in both directions and a `101 Switching
Protocols` answer turns the connection into a raw websocket relay.
"""

import base64
import hmac
import http.client
import json
import socket
import socketserver
import threading
import urllib.parse

from . import STANDIN_NOTICE, identity, output, relay, yamlsubset

MAX_HEAD = 64 * 1024
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"}


class ConfigError(ValueError):
    """Raised when frontend.yml is missing a required field or has an invalid one."""


def load_config(path):
    """Read frontend.yml (v: 1) and check the fields the stand-in uses."""
    try:
        cfg = yamlsubset.load_file(path)
    except OSError as exc:
        raise ConfigError(f"cannot read frontend config '{path}': {exc}") from exc
    if not isinstance(cfg, dict) or cfg.get("v") != 1:
        raise ConfigError(f"frontend config '{path}' must be a mapping with 'v: 1'")
    if not cfg.get("frontend_token"):
        raise ConfigError(f"frontend config '{path}': frontend_token is missing; use the token from 'zrok2 admin create frontend'")
    controller = cfg.get("controller") or {}
    if not controller.get("identity_path"):
        raise ConfigError(f"frontend config '{path}': controller.identity_path is missing")
    controller.setdefault("service_name", "dynamicProxyController")
    cfg["controller"] = controller
    cfg.setdefault("bind_address", "0.0.0.0:8080")
    return cfg


class Frontend:
    """Routing state of one stand-in frontend."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.token = cfg["frontend_token"]
        self.lookup_service = cfg["controller"]["service_name"]
        doc = identity.load(cfg["controller"]["identity_path"])
        self.router = identity.router_address(doc)

    def lookup(self, host):
        """Return the share mapping for `host`, or None when no share has that name."""
        query = urllib.parse.urlencode({"host": host, "frontend": self.token})
        sock = relay.dial(self.router, self.lookup_service, timeout=10)
        connection = http.client.HTTPConnection("ziti", timeout=10)
        connection.sock = sock
        try:
            connection.request("GET", f"/standin/v1/frontend-lookup?{query}", headers={"Connection": "close"})
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        if response.status == 404:
            return None
        if response.status != 200:
            raise relay.RelayError(f"controller lookup of '{host}' failed with HTTP {response.status}")
        return json.loads(body)


def host_only(host):
    """Strip the port from a Host header value, keeping IPv6 literals intact."""
    host = host.strip()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def read_head(sock, data=b""):
    """Read an HTTP head; return (head bytes without the blank line, leftover bytes).

    `data` contains bytes already received from `sock` that belong to this head.
    """
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD:
            raise ValueError("HTTP head is larger than 64 KiB")
        chunk = sock.recv(16 * 1024)
        if not chunk:
            if data:
                raise ValueError("connection closed inside the HTTP head")
            return None, b""
        data += chunk
    head, _, leftover = data.partition(b"\r\n\r\n")
    return head, leftover


def parse_head(head):
    lines = head.decode("iso-8859-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        name, separator, value = line.partition(":")
        if not separator:
            raise ValueError(f"invalid header line {line!r}")
        headers.append((name.strip(), value.strip()))
    return lines[0], headers


def header(headers, name):
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def build_head(first_line, headers):
    lines = [first_line] + [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1")


def simple_response(status, reason, body, extra_headers=()):
    payload = body.encode()
    headers = [("Content-Type", "text/html; charset=utf-8" if body.startswith("<") else "text/plain; charset=utf-8")]
    headers += list(extra_headers)
    headers += [("Content-Length", str(len(payload))), ("Connection", "close")]
    return build_head(f"HTTP/1.1 {status} {reason}", headers) + payload


def _basic_auth_ok(headers, users):
    value = header(headers, "authorization") or ""
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username, _, password = base64.b64decode(encoded.strip()).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    for user in users:
        if hmac.compare_digest(user["username"], username) and hmac.compare_digest(user["password"], password):
            return username
    return None


class _Handler(socketserver.BaseRequestHandler):
    frontend = None

    def handle(self):
        client = self.request
        try:
            head, leftover = read_head(client)
        except (OSError, ValueError):
            return
        if head is None:
            return
        try:
            request_line, headers = parse_head(head)
        except ValueError:
            client.sendall(simple_response(400, "Bad Request", "invalid HTTP request\n"))
            return
        host = host_only(header(headers, "host") or "")

        try:
            mapping = self.frontend.lookup(host.lower()) if host else None
        except (OSError, ValueError, relay.RelayError, http.client.HTTPException) as exc:
            output.error(f"cannot look up '{host}' through service '{self.frontend.lookup_service}': {exc}")
            client.sendall(simple_response(502, "Bad Gateway", "bad gateway!\n"))
            return
        if mapping is None:
            client.sendall(simple_response(404, "Not Found", f"<html><body><h1>{host}: share not found!</h1></body></html>"))
            return

        share_token = mapping["shareToken"]
        extra = []
        if mapping.get("authScheme") == "basic":
            username = _basic_auth_ok(headers, mapping.get("basicAuthUsers") or [])
            if username is None:
                client.sendall(
                    simple_response(401, "Unauthorized", "No Authorization\n", [("WWW-Authenticate", f'Basic realm="{share_token}"')])
                )
                return
            extra = [("zrok-auth-provider", "basic"), ("zrok-auth-user", username)]

        try:
            upstream = relay.dial(self.frontend.router, share_token, timeout=30)
        except relay.RelayError as exc:
            output.error(f"error proxying to share '{share_token}': {exc}")
            client.sendall(simple_response(502, "Bad Gateway", "bad gateway!\n"))
            return
        self._proxy(client, upstream, request_line, headers, leftover, extra)

    def _proxy(self, client, upstream, request_line, headers, leftover, extra):
        upgrading = (header(headers, "upgrade") or "") != "" and "upgrade" in (header(headers, "connection") or "").lower()
        forwarded = header(headers, "x-forwarded-for")
        client_ip = self.client_address[0]
        out = [(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP and k.lower() != "x-forwarded-for"]
        out.append(("X-Forwarded-For", f"{forwarded}, {client_ip}" if forwarded else client_ip))
        out.append(("X-Proxy", "zrok"))
        out.extend(extra)
        if upgrading:
            out += [("Connection", "Upgrade"), ("Upgrade", header(headers, "upgrade"))]
        else:
            out.append(("Connection", "close"))
        method = request_line.split(" ", 1)[0].upper()

        try:
            upstream.sendall(build_head(request_line, out) + leftover)
        except OSError:
            client.sendall(simple_response(502, "Bad Gateway", "bad gateway!\n"))
            upstream.close()
            return
        sender = threading.Thread(target=relay.pipe, args=(client, upstream), daemon=True)
        sender.start()
        try:
            self._relay_response(client, upstream, method)
        finally:
            for sock in (upstream, client):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            upstream.close()

    def _relay_response(self, client, upstream, method):
        leftover = b""
        while True:
            try:
                head, leftover = read_head(upstream, leftover)
            except (OSError, ValueError) as exc:
                output.error(f"error proxying: invalid response from share ({exc})")
                head = None
            if head is None:
                client.sendall(simple_response(502, "Bad Gateway", "bad gateway!\n"))
                return
            status_line, headers = parse_head(head)
            status = int(status_line.split(" ")[1])
            if 100 <= status < 200 and status != 101:
                # Interim responses such as `100 Continue` go to the client as they are.
                client.sendall(build_head(status_line, headers))
                continue
            break

        if status == 101:
            client.sendall(build_head(status_line, headers) + leftover)
            relay.pipe(upstream, client)
            return
        rewritten = [(k, v) for k, v in headers if k.lower() not in ("connection", "keep-alive")]
        rewritten.append(("Connection", "close"))
        client.sendall(build_head(status_line, rewritten))
        if method == "HEAD" or status in (204, 304):
            return
        length = header(headers, "content-length")
        if length is not None and "chunked" not in (header(headers, "transfer-encoding") or "").lower():
            remaining = int(length)
            chunk = leftover[:remaining]
            client.sendall(chunk)
            remaining -= len(chunk)
            while remaining > 0:
                data = upstream.recv(min(relay.BUFFER_SIZE, remaining))
                if not data:
                    break
                client.sendall(data)
                remaining -= len(data)
            return
        if leftover:
            client.sendall(leftover)
        relay.pipe(upstream, client)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def run(config_path):
    """Run the frontend described by `config_path` until SIGTERM or SIGINT."""
    cfg = load_config(config_path)
    frontend = Frontend(cfg)
    host, port = relay.parse_address(str(cfg["bind_address"]), 8080)

    class Handler(_Handler):
        pass

    Handler.frontend = frontend
    with _Server((host, port), Handler) as server:
        output.info(
            f"{STANDIN_NOTICE}: dynamic proxy frontend listening on {host}:{port}, "
            f"edge router {frontend.router[0]}:{frontend.router[1]}"
        )
        server.serve_forever()
