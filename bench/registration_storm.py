#!/usr/bin/env python3
"""Registration storm: enroll many printers at once against a real control server process.

The script starts, on loopback only:
  - a fake zrok admin API (its own process, uvicorn) that returns account tokens at once, so the
    figures measure the control server and not a zrok instance;
  - --replicas control server processes (`python -m controlserver serve`, default 1) on a fresh
    SQLite file, or on the PostgreSQL database given with --database. `--database postgres-temp`
    starts a throwaway PostgreSQL cluster with initdb and pg_ctl in the temporary directory.

It waits until the monitor has filled the zrok account pools (--pool-size accounts per frontend),
as an operator does before an enrollment wave, so registrations claim pooled accounts. Then it
registers --count printers from --concurrency concurrent keep-alive connections and runs the same
number of `GET /healthz` requests (the server's no-op endpoint) the same way. It prints the
rates, p50/p99 latency, their ratio, the servers' CPU time per request (and PostgreSQL's, for a
cluster it started) and their peak RSS.

Each frontend's capacity is 1.1 x --count / --frontends (220 with the defaults), about what one
frontend carries by design. Finally the bench grows the fleet to contain --stored printers as an
operator would: it adds frontends of the same capacity to the inventory and sends SIGHUP. It
tops the database up to --stored printers (written straight into the database, which is much
faster than registering them) and prints the server's RSS after it has served /metrics, the
frontend list and a round of heartbeats over them.

    python bench/registration_storm.py --count 10000 --concurrency 64
    python bench/registration_storm.py --database postgres-temp --replicas 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = secrets.token_hex(24)
ZROK_SECRET = secrets.token_hex(24)
# Seconds between the registration storm and the no-op run: twice the server's checkpoint interval.
SETTLE_S = 2.0

# Every frontend's API and health URL live under /<frontend>/. `POST /bench-control/fail/<frontend>`
# makes that frontend return 503 from then on, as a failed zrok instance would.
FAKE_ZROK = textwrap.dedent('''
    import secrets, sys
    import uvicorn

    failed = set()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        path = scope["path"]
        if scope["method"] == "POST" and path.startswith("/bench-control/fail/"):
            failed.add(path.rpartition("/")[2])
            body, status = b"{}", 200
        elif path.split("/")[1] in failed:
            body, status = b\'{"error": "bench: frontend failed"}\', 503
        elif scope["method"] == "POST" and path.endswith("/api/v2/account"):
            body = b'{"accountToken": "%s"}' % secrets.token_hex(12).encode()
            status = 201
        else:
            body, status = b'{"controllerVersion": "v2.0.8-bench"}', 200
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/zrok.v1+json")]})
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
''')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url_host: str, port: int, path: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            status, _ = asyncio.run(_one_request(url_host, port, "GET", path, None, {}))
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"error: nothing answered on {url_host}:{port}{path} within {timeout_s:.0f} s")


async def _one_request(host: str, port: int, method: str, path: str, body: bytes | None, headers: dict):
    connection = Connection(host, port)
    await connection.open()
    try:
        return await connection.request(method, path, body, headers)
    finally:
        connection.close()


class Connection:
    """A minimal HTTP/1.1 keep-alive client: the benchmark's own CPU use must stay small."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, bytes]:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        payload = await self.reader.readexactly(length) if length else b""
        return status, payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclass
class Run:
    name: str
    count: int
    seconds: float
    latencies_ms: list[float]
    failures: dict[int, int]

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def storm(name: str, servers: list[tuple[str, int]], count: int, concurrency: int, make_request,
                on_response=None) -> Run:
    """Send `count` requests from `concurrency` connections spread over the servers.

    `on_response(index, status, payload)`, if given, is called for every response."""
    next_index = 0
    latencies: list[float] = []
    failures: dict[int, int] = {}

    async def worker(number: int) -> None:
        nonlocal next_index
        host, port = servers[number % len(servers)]
        connection = Connection(host, port)
        await connection.open()
        try:
            while next_index < count:
                index = next_index
                next_index += 1
                method, path, body, headers = make_request(index)
                started = time.perf_counter()
                status, payload = await connection.request(method, path, body, headers)
                latencies.append((time.perf_counter() - started) * 1000)
                if on_response is not None:
                    on_response(index, status, payload)
                if status != 200:
                    failures[status] = failures.get(status, 0) + 1
                    if failures[status] == 1:
                        print(f"  first HTTP {status} in {name}: {payload[:200]!r}", file=sys.stderr)
        finally:
            connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return Run(name, count, time.perf_counter() - started, latencies, failures)


class RssSampler(threading.Thread):
    """Sample the resident set size of the server processes every 50 ms."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.processes = [psutil.Process(pid) for pid in pids]
        self.peak = 0
        self.stopping = threading.Event()

    def cpu_seconds(self) -> float:
        return sum(sum(process.cpu_times()[:2]) for process in self.processes)

    def current(self) -> int:
        return sum(process.memory_info().rss for process in self.processes)

    def run(self) -> None:
        while not self.stopping.wait(0.05):
            try:
                self.peak = max(self.peak, self.current())
            except psutil.NoSuchProcess:
                # A server exited: the run failed, and its error is reported where it happened.
                return


def write_inventory(directory: Path, zrok_port: int, frontends: int, capacity: int) -> Path:
    """Spread the frontends over European and US locations, each with its own API path."""
    locations = ["fsn1", "nbg1", "hel1", "eu-central-1", "eu-west-1", "us-east-1", "us-west-2", "ash"]
    hosts = {}
    for number in range(frontends):
        name = f"bench-{number:03d}"
        hosts[name] = {
            "fleet_region": "bench",
            "fleet_location": locations[number % len(locations)],
            "fleet_capacity": capacity,
            "zrok_api_endpoint": f"http://127.0.0.1:{zrok_port}/{name}",
            "zrok_share_domain": f"{name}.bench.test",
            "fleet_health_url": f"http://127.0.0.1:{zrok_port}/{name}/healthz",
        }
    path = directory / "inventory.yml"
    path.write_text(json.dumps({"all": {"children": {"zrok_frontends": {"hosts": hosts}}}}))
    secrets_path = directory / "secrets.yml"
    secrets_path.write_text(json.dumps({"zrok_admin_secrets": {name: ZROK_SECRET for name in hosts}}))
    secrets_path.chmod(0o600)
    return path


def spawn_servers(database_url: str, replicas: int, inventory: Path, workdir: Path,
                  pool_size: int, extra_env: dict | None = None) -> list[tuple[subprocess.Popen, int]]:
    """Start the control server processes. Several replicas need a PostgreSQL URL."""
    if replicas > 1 and database_url.startswith("sqlite"):
        raise SystemExit("error: --replicas above 1 needs a PostgreSQL database: pass --database postgres-temp "
                         "or a postgresql:// URL")
    servers = []
    for _ in range(replicas):
        port = free_port()
        env = dict(os.environ, FLEET_ADMIN_TOKEN=ADMIN_TOKEN, PYTHONPATH=str(REPO),
                   FLEET_LOG_LEVEL="warning",
                   FLEET_ZROK_ACCOUNT_POOL_SIZE=str(pool_size), FLEET_MOVE_INTERVAL_S="1",
                   # One refill before the storm; none during it, as after a pool filled ahead of a wave.
                   FLEET_ZROK_ACCOUNT_POOL_REFILL_INTERVAL_S="3600", **(extra_env or {}))
        process = subprocess.Popen(
            [sys.executable, "-m", "controlserver", "serve", "--inventory", str(inventory),
             "--database", database_url, "--listen", f"127.0.0.1:{port}",
             "--secrets-file", str(workdir / "secrets.yml")],
            env=env, cwd=workdir, stdout=subprocess.DEVNULL, stderr=open(workdir / f"server-{port}.log", "w"),
        )
        servers.append((process, port))
        if len(servers) == 1:
            # The first replica migrates the schema alone; the others start once it serves.
            wait_for("127.0.0.1", port, "/readyz", timeout_s=120)
    for process, port in servers:
        wait_for("127.0.0.1", port, "/readyz", timeout_s=120)
    return servers


def stop_servers(servers: list[tuple[subprocess.Popen, int]]) -> None:
    for process, _ in servers:
        process.send_signal(signal.SIGTERM)
    for process, _ in servers:
        process.wait(timeout=30)


def _as_postgres_user(command: list[str]) -> list[str]:
    # PostgreSQL does not run as root; the cluster then belongs to `nobody`.
    if os.geteuid() == 0:
        return ["runuser", "-u", "nobody", "--", *command]
    return command


@contextlib.contextmanager
def temporary_postgres(workdir: Path) -> Iterator[tuple[str, Path]]:
    """Run a throwaway PostgreSQL cluster under `workdir` on loopback; yield its URL and data directory.

    The cluster uses synchronous_commit=off: a commit returns before its WAL reaches the disk,
    and a crash loses the last commits but never corrupts the database. That matches SQLite's
    synchronous=NORMAL in WAL mode, which the server uses, so both databases pay the same for
    durability. A production PostgreSQL keeps the default (on) and pays a WAL flush per commit.
    """
    search_path = "/usr/local/bin:" + os.environ.get("PATH", "")
    initdb = shutil.which("initdb", path=search_path)
    pg_ctl = shutil.which("pg_ctl", path=search_path)
    if not initdb or not pg_ctl:
        raise SystemExit("error: --database postgres-temp needs PostgreSQL's initdb and pg_ctl on PATH")
    directory = workdir / "postgres"
    data = directory / "data"
    data.mkdir(parents=True)
    if os.geteuid() == 0:
        shutil.chown(directory, "nobody")
        shutil.chown(data, "nobody")
        workdir.chmod(0o755)
    subprocess.run(_as_postgres_user([initdb, "-D", str(data), "-U", "fleet", "--auth=trust"]),
                   check=True, capture_output=True, timeout=120)
    port = free_port()
    options = (f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c synchronous_commit=off "
               "-c max_connections=200 -c shared_buffers=128MB")
    subprocess.run(_as_postgres_user([pg_ctl, "-D", str(data), "-l", str(directory / "postgres.log"),
                                      "-o", options, "-w", "start"]),
                   check=True, capture_output=True, timeout=120)
    try:
        yield f"postgresql://fleet@127.0.0.1:{port}/postgres", data
    finally:
        subprocess.run(_as_postgres_user([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]),
                       capture_output=True, timeout=120)


def postgres_cpu_seconds(data: Path) -> float:
    """Return the CPU time of a temporary cluster: its postmaster, live backends and exited ones."""
    main = psutil.Process(int((data / "postmaster.pid").read_text().split()[0]))
    times = main.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in main.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += sum(child.cpu_times()[:2])
    return total


def wait_for_pools(address: tuple[str, int], admin: dict, wanted: int) -> None:
    """Wait until the monitor has made `wanted` zrok accounts ahead of demand."""
    started = time.monotonic()
    pooled = 0
    while time.monotonic() - started < 600:
        status, payload = asyncio.run(_one_request(*address, "GET", "/metrics", None, admin))
        pooled = sum(float(line.rpartition(" ")[2]) for line in payload.decode().splitlines()
                     if line.startswith("fleet_zrok_account_pool{"))
        if pooled >= wanted:
            print(f"zrok account pools filled: {pooled:.0f} accounts in {time.monotonic() - started:.1f} s")
            return
        time.sleep(0.5)
    raise SystemExit(f"error: the account pools hold {pooled:.0f} of {wanted} accounts after 600 s")


def accounts_created(addresses: list[tuple[str, int]], admin: dict) -> float:
    """Return the zrok accounts that the servers created through the admin API so far."""
    total = 0.0
    for address in addresses:
        _status, payload = asyncio.run(_one_request(*address, "GET", "/metrics", None, admin))
        total += sum(float(line.rpartition(" ")[2]) for line in payload.decode().splitlines()
                     if line.startswith("fleet_zrok_accounts_created_total{"))
    return total


def wait_for_frontends(addresses: list[tuple[str, int]], expected: int) -> None:
    """Wait until every server has loaded an inventory of `expected` frontends."""
    started = time.monotonic()
    for address in addresses:
        while True:
            _status, payload = asyncio.run(_one_request(*address, "GET", "/readyz", None, {}))
            loaded = json.loads(payload).get("frontends")
            if loaded == expected:
                break
            if time.monotonic() - started > 120:
                raise SystemExit(f"error: the server on port {address[1]} has {loaded} of {expected} frontends "
                                 "120 s after SIGHUP; see its log in the bench's temporary directory")
            time.sleep(0.2)


def fill_database(database_url: str, total: int, capacity: int) -> list[str]:
    """Insert printers, each with its zrok account, straight into the database until it contains `total` printers.

    Each frontend is filled up to `capacity`, in name order. Return the frontend of each added
    printer, `stored-<number>`, by number."""
    sys.path.insert(0, str(REPO))
    from sqlalchemy import func, insert, select, update

    from controlserver.core.db import Database
    from controlserver.core.security import hash_token, new_password
    from controlserver.models import Frontend, Printer, ZrokAccount, utcnow

    db = Database(database_url)
    # A write transaction from the start (BEGIN IMMEDIATE on SQLite): a read first and a write
    # later would fail with "database is locked" whenever the server commits in between.
    with db.write() as connection:
        existing = connection.scalar(select(func.count()).select_from(Printer))
        missing = max(0, total - existing)
        room = {name: capacity - assigned for name, assigned
                in connection.execute(select(Frontend.name, Frontend.assigned).order_by(Frontend.name))}
        free_places = sum(max(0, free) for free in room.values())
        if free_places < missing:
            raise SystemExit(f"error: the frontends have room for {free_places} more printers, "
                             f"not {missing}: raise --frontends or lower --stored")
        now = utcnow()
        places = (name for name, free in room.items() for _ in range(max(0, free)))
        added_per_frontend = {name: 0 for name in room}
        frontend_of = []
        rows = []
        accounts = []
        for number, frontend in zip(range(missing), places):
            added_per_frontend[frontend] += 1
            frontend_of.append(frontend)
            accounts.append({"printer_id": f"stored-{number:06d}", "frontend": frontend,
                             "email": f"stored-{number:06d}@bench.test", "account_token": secrets.token_hex(12),
                             "created_at": now})
            rows.append({
                "id": f"stored-{number:06d}", "hardware_id": f"hw{number:010d}",
                "token_hash": hash_token(f"fleet-printer-stored-{number}"), "frontend": frontend,
                "share_password": new_password(), "enrolled_at": now, "registered_at": now, "assigned_at": now,
                "latitude": 50.0, "longitude": 10.0, "probe_failures": 0, "restart_share": False,
                "share_state": "starting", "moonraker_state": "ok",
            })
            if len(rows) == 5000:
                connection.execute(insert(Printer), rows)
                connection.execute(insert(ZrokAccount), accounts)
                rows, accounts = [], []
        if rows:
            connection.execute(insert(Printer), rows)
            connection.execute(insert(ZrokAccount), accounts)
        for name, added in added_per_frontend.items():
            if added:
                connection.execute(update(Frontend).where(Frontend.name == name)
                                   .values(assigned=Frontend.assigned + added))
    db.dispose()
    return frontend_of


def print_run(run: Run) -> None:
    failed = sum(run.failures.values())
    print(f"{run.name:>14}: {run.count} requests in {run.seconds:.2f} s = {run.rate:.0f}/s, "
          f"p50 {run.percentile(0.5):.1f} ms, p99 {run.percentile(0.99):.1f} ms"
          + (f", FAILED {failed} {run.failures}" if failed else ""))


def open_database(stack: contextlib.ExitStack, spec: str | None, workdir: Path) -> tuple[str, Path | None]:
    """Return the database URL for --database, and the data directory if the bench runs PostgreSQL itself."""
    if spec is None:
        return f"sqlite:///{workdir / 'control.db'}", None
    if spec == "postgres-temp":
        return stack.enter_context(temporary_postgres(workdir))
    return spec, None


def add_database_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database",
                        help="database URL of an empty database, or `postgres-temp` for a throwaway PostgreSQL "
                             "cluster started with initdb and pg_ctl (default: a fresh SQLite file)")
    parser.add_argument("--replicas", type=int, default=1,
                        help="control server processes on the one database (default 1; above 1 needs PostgreSQL)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10_000, help="printers to register (default 10000)")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent client connections (default 64)")
    parser.add_argument("--stored", type=int, default=100_000,
                        help="printers in the database for the final RSS figure (default 100000; 0 skips)")
    parser.add_argument("--frontends", type=int, default=50, help="frontends in the generated inventory")
    parser.add_argument("--pool-size", type=int,
                        help="zrok accounts each frontend's pool holds before the storm (default: enough for "
                             "--count; 0 creates every account during registration)")
    add_database_options(parser)
    args = parser.parse_args()

    capacity = -(-args.count * 11 // 10 // args.frontends)
    pool_size = args.pool_size if args.pool_size is not None else -(-args.count * 11 // 10 // args.frontends)
    with tempfile.TemporaryDirectory(prefix="registration-storm-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        database_url, postgres_data = open_database(stack, args.database, workdir)
        zrok_port = free_port()
        zrok = subprocess.Popen([sys.executable, "-c", FAKE_ZROK, str(zrok_port)], cwd=workdir)
        servers: list[tuple[subprocess.Popen, int]] = []
        try:
            wait_for("127.0.0.1", zrok_port, "/x/api/v2/versions")
            inventory = write_inventory(workdir, zrok_port, args.frontends, capacity)
            servers = spawn_servers(database_url, args.replicas, inventory, workdir, pool_size)
            addresses = [("127.0.0.1", port) for _, port in servers]
            sampler = RssSampler([process.pid for process, _ in servers])
            sampler.start()
            print(f"control server: {len(servers)} process(es) on {database_url}; {args.frontends} frontends "
                  f"x {capacity} capacity; {args.count} printers, {args.concurrency} connections; "
                  f"{os.cpu_count()} CPUs")

            def database_cpu() -> float:
                return postgres_cpu_seconds(postgres_data) if postgres_data else 0.0

            admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            if pool_size:
                # The whole pool, so that no refill competes with the storm.
                wait_for_pools(addresses[0], admin, min(pool_size, capacity) * args.frontends)
            status, payload = asyncio.run(_one_request(*addresses[0], "POST", "/v1/enrollment-tokens", b"{}", admin))
            if status != 200:
                raise SystemExit(f"error: enrollment token request failed: HTTP {status} {payload[:200]!r}")
            enroll = {"Authorization": f"Bearer {json.loads(payload)['token']}"}

            def registration(index: int):
                body = json.dumps({
                    "printer_id": f"storm-{index:06d}", "hardware_id": f"hw-storm-{index:08d}",
                    "latitude": 35.0 + (index % 30), "longitude": -100.0 + (index % 130),
                    "agent_version": "bench", "moonraker_api_key": "0" * 32,
                }).encode()
                return "POST", "/v1/printers/register", body, enroll

            created_before = accounts_created(addresses, admin)
            cpu_before, database_before = sampler.cpu_seconds(), database_cpu()
            registrations = asyncio.run(storm("registrations", addresses, args.count, args.concurrency, registration))
            # The server copies SQLite's write-ahead log into the database file in a thread, once a
            # second. Wait for the copy of the storm's last writes, so that its CPU counts for the
            # registrations and it does not slow the no-op run.
            time.sleep(SETTLE_S)
            cpu_registrations = sampler.cpu_seconds() - cpu_before
            database_registrations = database_cpu() - database_before
            noop = asyncio.run(storm("GET /healthz", addresses, args.count, args.concurrency,
                                     lambda _index: ("GET", "/healthz", None, {})))
            cpu_noop = sampler.cpu_seconds() - cpu_before - cpu_registrations
            peak_storm = sampler.peak
            print_run(registrations)
            print_run(noop)
            print(f"ratio registrations/no-op: {registrations.rate / noop.rate:.2f}")
            print(f"server CPU per request: registration {cpu_registrations / args.count * 1000:.2f} ms, "
                  f"no-op {cpu_noop / args.count * 1000:.2f} ms")
            if postgres_data:
                print(f"PostgreSQL CPU per registration: {database_registrations / args.count * 1000:.2f} ms")
            print(f"peak server RSS during the storm: {peak_storm / 2**20:.0f} MiB")
            # Registrations on a frontend whose pool ran dry create their account through the admin
            # API during the request, which costs several times the CPU of a pooled one.
            print(f"zrok accounts created during the storm (pools empty): "
                  f"{accounts_created(addresses, admin) - created_before:.0f}")

            if args.stored:
                grown = max(args.frontends, -(-args.stored * 11 // 10 // capacity))
                if grown > args.frontends:
                    write_inventory(workdir, zrok_port, grown, capacity)
                    for process, _port in servers:
                        process.send_signal(signal.SIGHUP)
                    wait_for_frontends(addresses, grown)
                    print(f"fleet grown to {grown} frontends x {capacity} capacity for {args.stored} printers")
                frontend_of = fill_database(database_url, args.stored, capacity)
                asyncio.run(exercise_stored(addresses, admin, args.concurrency, frontend_of))
                print(f"server RSS with {args.stored} printers stored ({len(frontend_of)} written directly): "
                      f"{sampler.current() / 2**20:.0f} MiB now, peak {sampler.peak / 2**20:.0f} MiB")
            sampler.stopping.set()

            failed = sum(registrations.failures.values()) + sum(noop.failures.values())
            return 1 if failed else 0
        finally:
            stop_servers(servers)
            zrok.terminate()
            zrok.wait(timeout=10)


async def exercise_stored(addresses, admin: dict, concurrency: int, frontend_of: list[str]) -> None:
    """Make the server touch the stored printers: metrics, frontends, printer pages, heartbeats."""
    host, port = addresses[0]
    for path in ("/metrics", "/v1/frontends", "/v1/printers?limit=1000"):
        status, payload = await _one_request(host, port, "GET", path, None, admin)
        if status != 200:
            raise SystemExit(f"error: GET {path} failed: HTTP {status} {payload[:200]!r}")

    def heartbeat(index: int):
        number = index * 37 % len(frontend_of)
        body = json.dumps({"frontend": frontend_of[number], "share_state": "active",
                           "moonraker_state": "ok", "klippy_state": "ready"}).encode()
        headers = {"Authorization": f"Bearer fleet-printer-stored-{number}"}
        return "POST", f"/v1/printers/stored-{number:06d}/heartbeat", body, headers

    if not frontend_of:
        return
    run = await storm("heartbeats", addresses, min(5000, len(frontend_of)), concurrency, heartbeat)
    print_run(run)


if __name__ == "__main__":
    raise SystemExit(main())
