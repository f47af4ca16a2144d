#!/usr/bin/env python3
"""Failover herd: one frontend with many printers fails, and all its agents call at once.

On loopback only, the script starts the fake zrok admin API of registration_storm.py and the
control server process(es), then:

 1. drains every frontend but bench-000 and registers --printers printers, so all of them land
    on bench-000, then undrains the others;
 2. makes bench-000 fail: the fake zrok returns 503 for its API and health URL from then on;
 3. waits until the monitor marks bench-000 unhealthy (--unhealthy-after failed probes, one probe
    every --probe-interval seconds);
 4. sends one heartbeat from every agent at once and prints p50/p99 latency and the actions;
 5. re-registers every agent at once with its printer token. A re-registering printer whose
    frontend is unusable moves at once. It prints p50/p99 latency and the time until every
    printer was assigned elsewhere, counted from the failure and from the start of the herd.

It then checks through the admin API that no frontend is over capacity, that bench-000 keeps no
printer and that each printer has one frontend.

    python bench/failover_herd.py --printers 1000
    python bench/failover_herd.py --printers 1000 --database postgres-temp --replicas 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from registration_storm import (
    ADMIN_TOKEN,
    FAKE_ZROK,
    RssSampler,
    _one_request,
    add_database_options,
    free_port,
    open_database,
    postgres_cpu_seconds,
    print_run,
    spawn_servers,
    stop_servers,
    storm,
    wait_for,
    wait_for_pools,
    write_inventory,
)

FAILING = "bench-000"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def admin_call(address: tuple[str, int], method: str, path: str, body: bytes | None = None) -> dict:
    status, payload = asyncio.run(_one_request(*address, method, path, body, ADMIN))
    if status != 200:
        raise SystemExit(f"error: {method} {path} failed: HTTP {status} {payload[:200]!r}")
    return json.loads(payload)


def frontends(address: tuple[str, int]) -> dict[str, dict]:
    return {f["name"]: f for f in admin_call(address, "GET", "/v1/frontends")["frontends"]}


def raise_open_file_limit(needed: int) -> None:
    """Allow one socket per agent in this process and in the servers, which inherit the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--printers", type=int, default=1000, help="printers on the failing frontend (default 1000)")
    parser.add_argument("--frontends", type=int, default=10, help="frontends in the inventory (default 10)")
    parser.add_argument("--probe-interval", type=float, default=1.0,
                        help="seconds between the monitor's frontend probes (default 1; the server's default is 15)")
    parser.add_argument("--unhealthy-after", type=int, default=3,
                        help="failed probes before a frontend is unhealthy (default 3, as the server's default)")
    add_database_options(parser)
    args = parser.parse_args()
    if args.frontends < 2:
        raise SystemExit("error: --frontends must be at least 2: the printers need somewhere to move")

    raise_open_file_limit(args.printers * 2 + 256)
    # Each frontend can take every printer, so capacity never limits the failover.
    capacity = args.printers
    # Enough pooled zrok accounts on the other frontends for every moved printer, plus 10 %.
    pool_size = -(-args.printers * 11 // 10 // (args.frontends - 1))
    extra_env = {"FLEET_FRONTEND_PROBE_INTERVAL_S": str(args.probe_interval),
                 "FLEET_UNHEALTHY_AFTER": str(args.unhealthy_after)}
    with tempfile.TemporaryDirectory(prefix="failover-herd-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        database_url, postgres_data = open_database(stack, args.database, workdir)
        zrok_port = free_port()
        zrok = subprocess.Popen([sys.executable, "-c", FAKE_ZROK, str(zrok_port)], cwd=workdir)
        servers: list[tuple[subprocess.Popen, int]] = []
        try:
            wait_for("127.0.0.1", zrok_port, "/x/api/v2/versions")
            inventory = write_inventory(workdir, zrok_port, args.frontends, capacity)
            servers = spawn_servers(database_url, args.replicas, inventory, workdir, pool_size, extra_env)
            addresses = [("127.0.0.1", port) for _, port in servers]
            sampler = RssSampler([process.pid for process, _ in servers])
            print(f"control server: {len(servers)} process(es) on {database_url}; {args.frontends} frontends; "
                  f"{args.printers} printers on {FAILING}; probes every {args.probe_interval} s, unhealthy after "
                  f"{args.unhealthy_after}; {os.cpu_count()} CPUs")
            wait_for_pools(addresses[0], ADMIN, min(pool_size, capacity) * args.frontends)

            tokens = enroll_on_failing_frontend(addresses, args.printers, args.frontends)

            failed_at = time.perf_counter()
            asyncio.run(_one_request("127.0.0.1", zrok_port, "POST", f"/bench-control/fail/{FAILING}", b"", {}))
            while frontends(addresses[0])[FAILING]["healthy"]:
                time.sleep(0.1)
            detected_at = time.perf_counter()
            print(f"{FAILING} failed; marked unhealthy after {detected_at - failed_at:.1f} s")

            cpu_before = sampler.cpu_seconds()
            database_before = postgres_cpu_seconds(postgres_data) if postgres_data else 0.0
            heartbeat_herd(addresses, tokens)
            reassigned_at, herd_started = registration_herd(addresses, tokens)
            cpu = sampler.cpu_seconds() - cpu_before
            print(f"all {args.printers} printers reassigned {reassigned_at - failed_at:.1f} s after the failure, "
                  f"{reassigned_at - detected_at:.1f} s after it was detected, "
                  f"{reassigned_at - herd_started:.2f} s after the re-registration herd started")
            print(f"server CPU per herd request (heartbeat and registration): {cpu / (2 * args.printers) * 1000:.2f} ms")
            if postgres_data:
                database_cpu = postgres_cpu_seconds(postgres_data) - database_before
                print(f"PostgreSQL CPU per herd request: {database_cpu / (2 * args.printers) * 1000:.2f} ms")

            return check_final_state(addresses[-1], args.printers)
        except SystemExit:
            print_server_errors(workdir)
            raise
        finally:
            stop_servers(servers)
            zrok.terminate()
            zrok.wait(timeout=10)


def print_server_errors(workdir: Path, limit: int = 20) -> None:
    """Print the servers' logged errors, before the temporary directory with their logs goes away."""
    for log_path in sorted(workdir.glob("server-*.log")):
        lines = [line for line in log_path.read_text(errors="replace").splitlines() if '"error"' in line]
        counts = Counter(lines)
        for line, count in counts.most_common(limit):
            print(f"{log_path.name} ({count}x): {line[:400]}", file=sys.stderr)


def enroll_on_failing_frontend(addresses, printers: int, frontend_count: int) -> dict[str, str]:
    """Register the printers while every other frontend is drained; return printer id -> printer token."""
    others = [f"bench-{number:03d}" for number in range(1, frontend_count)]
    for name in others:
        admin_call(addresses[0], "POST", f"/v1/frontends/{name}/drain")
    enroll = {"Authorization": f"Bearer {admin_call(addresses[0], 'POST', '/v1/enrollment-tokens', b'{}')['token']}"}
    tokens: dict[str, str] = {}
    wrong: Counter = Counter()

    def registration(index: int):
        body = json.dumps({"printer_id": f"herd-{index:05d}", "hardware_id": f"hw-herd-{index:08d}",
                           "latitude": 50.0, "longitude": 10.0, "agent_version": "bench"}).encode()
        return "POST", "/v1/printers/register", body, enroll

    def keep_token(_index: int, status: int, payload: bytes) -> None:
        if status == 200:
            body = json.loads(payload)
            tokens[body["printer_id"]] = body["printer_token"]
            if body["assignment"]["frontend"] != FAILING:
                wrong[body["assignment"]["frontend"]] += 1

    # The registrations spread over the replicas, and each replica caches the frontends' drain
    # state for up to 1 s (services.fleet.STATES_MAX_AGE_S).
    time.sleep(1.5)
    run = asyncio.run(storm("enrollment", addresses, printers, 64, registration, keep_token))
    print_run(run)
    if run.failures or wrong:
        raise SystemExit(f"error: enrollment failed ({run.failures}) or missed {FAILING} ({dict(wrong)})")
    for name in others:
        admin_call(addresses[0], "POST", f"/v1/frontends/{name}/undrain")
    time.sleep(1.5)
    return tokens


def heartbeat_herd(addresses, tokens: dict[str, str]) -> None:
    """Send one heartbeat per agent, all at once, each reporting the failed frontend."""
    printer_ids = sorted(tokens)
    actions: Counter = Counter()

    def heartbeat(index: int):
        printer_id = printer_ids[index]
        body = json.dumps({"frontend": FAILING, "share_state": "failed", "moonraker_state": "ok",
                           "klippy_state": "ready"}).encode()
        return ("POST", f"/v1/printers/{printer_id}/heartbeat", body,
                {"Authorization": f"Bearer {tokens[printer_id]}"})

    def count_action(_index: int, status: int, payload: bytes) -> None:
        if status == 200:
            actions[json.loads(payload)["action"]] += 1

    run = asyncio.run(storm("heartbeat herd", addresses, len(printer_ids), len(printer_ids), heartbeat,
                            count_action))
    print_run(run)
    # "stay" means the move is queued for the monitor; "move" means the monitor moved it already.
    print(f"  heartbeat actions: {dict(actions)}")


def registration_herd(addresses, tokens: dict[str, str]) -> tuple[float, float]:
    """Re-register every agent at once; return when the last one was reassigned and when the herd began."""
    printer_ids = sorted(tokens)
    still_failing: list[str] = []
    last_answer = 0.0

    def registration(index: int):
        printer_id = printer_ids[index]
        body = json.dumps({"printer_id": printer_id, "hardware_id": f"hw-herd-{int(printer_id[5:]):08d}",
                           "agent_version": "bench"}).encode()
        return "POST", "/v1/printers/register", body, {"Authorization": f"Bearer {tokens[printer_id]}"}

    def check_frontend(index: int, status: int, payload: bytes) -> None:
        nonlocal last_answer
        last_answer = time.perf_counter()
        if status != 200 or json.loads(payload)["assignment"]["frontend"] == FAILING:
            still_failing.append(printer_ids[index])

    started = time.perf_counter()
    run = asyncio.run(storm("register herd", addresses, len(printer_ids), len(printer_ids), registration,
                            check_frontend))
    print_run(run)
    if still_failing:
        raise SystemExit(f"error: {len(still_failing)} printers were not reassigned, e.g. {still_failing[:3]}")
    return last_answer, started


def check_final_state(address: tuple[str, int], printers: int) -> int:
    """Check capacity, the emptied frontend and the printer count through the admin API."""
    state = frontends(address)
    over = {name: (f["assigned"], f["capacity"]) for name, f in state.items() if f["assigned"] > f["capacity"]}
    assigned = sum(f["assigned"] for f in state.values())
    listed: set[str] = set()
    after = ""
    while True:
        page = admin_call(address, "GET", f"/v1/printers?limit=1000&after={after}")
        listed.update(printer["printer_id"] for printer in page["printers"] if printer["frontend"] != FAILING)
        if page["next_after"] is None:
            break
        after = page["next_after"]
    problems = []
    if over:
        problems.append(f"frontends over capacity: {over}")
    if state[FAILING]["assigned"]:
        problems.append(f"{FAILING} still counts {state[FAILING]['assigned']} printers")
    if assigned != printers or len(listed) != printers:
        problems.append(f"{assigned} places taken and {len(listed)} printers elsewhere, expected {printers} each")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    print("final state: " + ("FAILED" if problems else "capacity kept, every printer on one healthy frontend"))
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
