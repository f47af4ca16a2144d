"""The stand-in's data plane: an OpenZiti-like edge router that relays TCP streams.

Real zrok carries public traffic over an OpenZiti overlay: the sharing host
dials out to an edge router (port 3022) and binds its share's service there,
and the public frontend dials that service through the router. This module
keeps that shape with a small line protocol over plain TCP:

- A host that binds a service opens a control connection and sends
  `BIND <service>`, and the router replies `OK`. Whenever someone dials the
  service, the router sends `DIAL <id>` on that control connection.
- The binding host then opens a new outbound connection, sends
  `ACCEPT <id>`, and from then on the connection carries the dialer's bytes.
- A dialer (the frontend) sends `DIAL <service>` and receives `OK` once the
  binding host has accepted, or `ERR <reason>` when the service has no bound
  host or the bound host did not accept within DIAL_TIMEOUT seconds.

Each dial gets its own TCP connection, so request bodies stream without
buffering and websockets pass through as raw bytes. Both sides only open
outbound connections to the router: a printer never accepts one.

NOTE: the router checks no identity or service policy. Any client that
reaches port 3022 can bind or dial any service name, which real OpenZiti
forbids; keep the stand-in on a lab network.
"""

import itertools
import socket
import threading
import time

from . import output

DIAL_TIMEOUT = 10.0
PING_INTERVAL = 15.0
BUFFER_SIZE = 256 * 1024


class RelayError(Exception):
    """Raised when the router refuses a bind or dial, or cannot be reached."""


def parse_address(text, default_port=3022):
    """Split `host:port` (optionally prefixed by `tls:` or `tcp:`) into a (host, port) pair."""
    for prefix in ("tls://", "tcp://", "tls:", "tcp:"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    host, _, port = text.rpartition(":")
    if not host:
        return text, default_port
    return host.strip("[]"), int(port)


def recv_line(sock, limit=1024):
    """Read one `\\n`-terminated line byte by byte, so no payload bytes are consumed."""
    data = bytearray()
    while len(data) < limit:
        chunk = sock.recv(1)
        if not chunk:
            break
        if chunk == b"\n":
            return data.decode("utf-8", "replace")
        data += chunk
    if not data:
        raise ConnectionError("connection closed")
    raise ConnectionError("protocol line too long or truncated")


def pipe(source, destination):
    """Copy bytes from `source` to `destination` until EOF, then half-close `destination`."""
    try:
        while True:
            chunk = source.recv(BUFFER_SIZE)
            if not chunk:
                break
            destination.sendall(chunk)
    except OSError:
        pass
    finally:
        try:
            destination.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def splice(first, second):
    """Relay bytes both ways between two sockets until both directions end, then close them."""
    other = threading.Thread(target=pipe, args=(second, first), daemon=True)
    other.start()
    pipe(first, second)
    other.join()
    for sock in (first, second):
        try:
            sock.close()
        except OSError:
            pass


def _keepalive(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


class _Binding:
    def __init__(self, service, control):
        self.service = service
        self.control = control
        self.send_lock = threading.Lock()

    def send(self, line):
        with self.send_lock:
            self.control.sendall(line.encode() + b"\n")


class Router:
    """The edge router: accepts BIND, DIAL and ACCEPT connections and pairs them."""

    def __init__(self, host, port):
        self.server = socket.create_server((host, port), reuse_port=False, backlog=256)
        self.address = self.server.getsockname()[:2]
        self._lock = threading.Lock()
        self._bindings = {}
        self._pending = {}
        self._ids = itertools.count(1)
        self._round_robin = itertools.count()
        self._closed = False

    def serve_forever(self):
        output.info(f"edge router listening on {self.address[0]}:{self.address[1]}")
        threading.Thread(target=self._ping_loop, daemon=True).start()
        while not self._closed:
            try:
                conn, peer = self.server.accept()
            except OSError:
                break
            threading.Thread(target=self._handle, args=(conn, peer), daemon=True).start()

    def close(self):
        self._closed = True
        self.server.close()

    def terminators(self, service):
        """Return how many hosts currently bind `service`."""
        with self._lock:
            return len(self._bindings.get(service, []))

    def _handle(self, conn, peer):
        try:
            conn.settimeout(30)
            line = recv_line(conn)
            conn.settimeout(None)
        except (OSError, ConnectionError):
            conn.close()
            return
        verb, _, argument = line.strip().partition(" ")
        if verb == "BIND" and argument:
            self._serve_binding(conn, argument, peer)
        elif verb == "DIAL" and argument:
            self._serve_dial(conn, argument)
        elif verb == "ACCEPT" and argument:
            self._serve_accept(conn, argument)
        else:
            conn.sendall(b"ERR unknown request\n")
            conn.close()

    def _serve_binding(self, conn, service, peer):
        _keepalive(conn)
        binding = _Binding(service, conn)
        with self._lock:
            self._bindings.setdefault(service, []).append(binding)
        output.info(f"bound service '{service}' for {peer[0]}:{peer[1]}")
        try:
            binding.send("OK")
            while True:
                line = recv_line(conn)
                if line.strip() == "PONG":
                    continue
        except (OSError, ConnectionError):
            pass
        finally:
            with self._lock:
                bound = self._bindings.get(service, [])
                if binding in bound:
                    bound.remove(binding)
                if not bound:
                    self._bindings.pop(service, None)
            conn.close()
            output.info(f"unbound service '{service}' for {peer[0]}:{peer[1]}: control connection closed")

    def _serve_dial(self, conn, service):
        with self._lock:
            bound = list(self._bindings.get(service, []))
        if not bound:
            self._refuse(conn, f"service '{service}' has no terminators")
            return
        binding = bound[next(self._round_robin) % len(bound)]
        dial_id = str(next(self._ids))
        accepted = threading.Event()
        slot = {"event": accepted, "conn": None}
        with self._lock:
            self._pending[dial_id] = slot
        try:
            binding.send(f"DIAL {dial_id}")
        except OSError:
            with self._lock:
                self._pending.pop(dial_id, None)
            self._refuse(conn, f"service '{service}' terminator is gone")
            return
        if not accepted.wait(DIAL_TIMEOUT):
            with self._lock:
                self._pending.pop(dial_id, None)
            self._refuse(conn, f"service '{service}' terminator did not accept within {DIAL_TIMEOUT:.0f}s")
            return
        try:
            conn.sendall(b"OK\n")
        except OSError:
            slot["conn"].close()
            conn.close()
            return
        splice(conn, slot["conn"])

    def _serve_accept(self, conn, dial_id):
        with self._lock:
            slot = self._pending.pop(dial_id, None)
        if slot is None:
            conn.close()
            return
        slot["conn"] = conn
        slot["event"].set()

    def _refuse(self, conn, reason):
        output.warn(f"dial refused: {reason}")
        try:
            conn.sendall(f"ERR {reason}\n".encode())
        except OSError:
            pass
        conn.close()

    def _ping_loop(self):
        while not self._closed:
            time.sleep(PING_INTERVAL)
            with self._lock:
                bindings = [b for bound in self._bindings.values() for b in bound]
            for binding in bindings:
                try:
                    binding.send("PING")
                except OSError:
                    pass


def dial(router_address, service, timeout=30.0):
    """Dial `service` through the router and return the connected socket."""
    host, port = router_address
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise RelayError(f"cannot reach edge router {host}:{port}: {exc}") from exc
    try:
        sock.sendall(f"DIAL {service}\n".encode())
        answer = recv_line(sock)
    except (OSError, ConnectionError) as exc:
        sock.close()
        raise RelayError(f"edge router {host}:{port} closed the dial of '{service}': {exc}") from exc
    if answer != "OK":
        sock.close()
        raise RelayError(answer[4:] if answer.startswith("ERR ") else answer)
    sock.settimeout(None)
    return sock


class Binder:
    """Keep `service` bound on the router and hand every dialed connection to `on_accept`.

    The control connection is re-opened with backoff when it breaks, as the
    OpenZiti SDK re-binds after a router restart.
    """

    def __init__(self, router_address, service, on_accept):
        self.router_address = router_address
        self.service = service
        self.on_accept = on_accept
        self.bound = threading.Event()
        self._stopped = threading.Event()
        self._control = None
        self._failures = 0
        self._was_bound = False

    def start(self):
        threading.Thread(target=self.run, daemon=True).start()
        return self

    def stop(self):
        self._stopped.set()
        if self._control is not None:
            try:
                self._control.close()
            except OSError:
                pass

    def run(self):
        delay = 0.5
        last_logged = 0.0
        while not self._stopped.is_set():
            self._was_bound = False
            try:
                self._bind_once()
            except (OSError, ConnectionError, RelayError) as exc:
                self.bound.clear()
                if self._stopped.is_set():
                    break
                if self._was_bound:
                    # A binding that held until now starts a fresh backoff.
                    delay = 0.5
                self._failures += 1
                # Log the first failure, then at most one line a minute while the router stays away.
                if self._failures == 1 or time.monotonic() - last_logged >= 60:
                    last_logged = time.monotonic()
                    output.warn(
                        f"service '{self.service}' is not bound on edge router "
                        f"{self.router_address[0]}:{self.router_address[1]} ({exc}); "
                        f"attempt {self._failures}; retrying with backoff of at most 5s"
                    )
            self._stopped.wait(delay)
            delay = min(delay * 2, 5.0)

    def _bind_once(self):
        control = socket.create_connection(self.router_address, timeout=10)
        self._control = control
        try:
            _keepalive(control)
            control.sendall(f"BIND {self.service}\n".encode())
            answer = recv_line(control)
            if answer != "OK":
                raise RelayError(answer)
            control.settimeout(None)
            self.bound.set()
            self._was_bound = True
            if self._failures:
                output.info(f"service '{self.service}' bound again after {self._failures} failed attempts")
                self._failures = 0
            while True:
                line = recv_line(control).strip()
                if line == "PING":
                    control.sendall(b"PONG\n")
                elif line.startswith("DIAL "):
                    dial_id = line[5:]
                    threading.Thread(target=self._accept, args=(dial_id,), daemon=True).start()
        finally:
            self.bound.clear()
            control.close()

    def _accept(self, dial_id):
        try:
            sock = socket.create_connection(self.router_address, timeout=10)
            sock.sendall(f"ACCEPT {dial_id}\n".encode())
            sock.settimeout(None)
        except OSError as exc:
            output.warn(f"cannot accept a dial of '{self.service}': {exc}")
            return
        self.on_accept(sock)
