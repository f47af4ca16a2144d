"""`zrok2 share public <target>`: create a share and serve it until stopped.

The process requests the share from the controller, binds the share token on the
edge router over an outbound connection, and copies every dialed connection
to the local target. SIGTERM and SIGINT delete the share before exiting, as
the real CLI does. After SIGKILL the share stays recorded on the controller
and keeps its name, so the next share of that name gets 409 shareConflict
until someone runs `zrok2 delete share <token>`.
"""

import signal
import socket
import threading
import urllib.parse

from . import identity, output, relay
from .env import ApiError


def parse_target(target):
    """Return (host, port) for an `http://host:port` target or a bare `host:port`."""
    if "://" not in target:
        target = "http://" + target
    parsed = urllib.parse.urlsplit(target)
    if parsed.scheme != "http":
        raise ValueError(f"the stand-in proxies only http:// targets, not '{target}'")
    return parsed.hostname or "127.0.0.1", parsed.port or 80


def _serve_connection(tunnel, target):
    try:
        local = socket.create_connection(target, timeout=10)
        local.settimeout(None)
    except OSError as exc:
        output.error(f"cannot reach share target {target[0]}:{target[1]}: {exc}")
        tunnel.sendall(
            b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
            b"Connection: close\r\n\r\nbad gateway\n"
        )
        tunnel.close()
        return
    relay.splice(tunnel, local)


def run_public(root, client, request_body, target, headless):
    """Create the share, print its endpoints and serve it until SIGTERM or SIGINT."""
    environment = root.environment()
    token = environment["zrok_token"]
    share = client.call("POST", "/share", "share", request_body, token=token)
    share_token = share["shareToken"]
    endpoints = share.get("frontendProxyEndpoints") or []

    stopping = threading.Event()

    def shutdown(signum, frame):
        stopping.set()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)

    doc = identity.load(root.identity_path("environment"))
    router = identity.router_address(doc, environment.get("api_endpoint"))
    binder = relay.Binder(router, share_token, lambda tunnel: _serve_connection(tunnel, target)).start()
    if not binder.bound.wait(30):
        output.warn(f"share '{share_token}' is not bound on edge router {router[0]}:{router[1]} yet; still trying")
    output.info("access your zrok share at the following endpoints:\n " + "\n".join(endpoints))

    while not stopping.wait(1):
        pass

    binder.stop()
    try:
        client.call(
            "DELETE",
            "/unshare",
            "unshare",
            {"envZId": environment["ziti_identity"], "shareToken": share_token},
            token=token,
        )
    except (ApiError, OSError) as exc:
        output.error(f"error shutting down '{share_token}': {exc}")
