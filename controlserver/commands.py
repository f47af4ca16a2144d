"""Operator commands: call a running server's admin API and show the response as a table, a progress
bar or JSON (`--json`).

Output goes through rich. It colours only on a terminal and never when NO_COLOR is set, and a drain
shows a live progress bar on a terminal but one plain line per change otherwise, so logs and pipes
get readable text.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from controlserver.core.settings import check_secret

DEFAULT_SERVER = "https://127.0.0.1:8443"
# Width for output that is not a terminal, so that a table is not wrapped at rich's default of 80.
PIPE_WIDTH = 240


class CommandFailed(SystemExit):
    """Stop the command with `error: <message>` on stderr and exit status 1."""

    def __init__(self, message: str) -> None:
        super().__init__(f"error: {message}")


def make_console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH
    return console


def print_table(console: Console, table: Table) -> None:
    """Print a table. On a terminal rich prints it as it is, elsewhere without trailing spaces, which
    rich pads every cell with."""
    if console.is_terminal:
        console.print(table)
        return
    with console.capture() as captured:
        console.print(table)
    for line in captured.get().splitlines():
        print(line.rstrip())


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


# -- the API client ----------------------------------------------------------------------------

def read_token(args: argparse.Namespace) -> str:
    """Return the caller's token: FLEET_TOKEN, else FLEET_ADMIN_TOKEN, else the --token-file."""
    token = os.environ.get("FLEET_TOKEN") or os.environ.get("FLEET_ADMIN_TOKEN")
    if not token and args.token_file:
        try:
            token = Path(args.token_file).read_text()
        except OSError as exc:
            raise CommandFailed(f"token file {args.token_file} cannot be read: {exc.strerror}") from None
    if not token:
        raise CommandFailed("no token: set FLEET_TOKEN (admin or operator token) or pass --token-file")
    try:
        return check_secret(token, "token")
    except ValueError as exc:
        raise CommandFailed(str(exc)) from None


def call(args: argparse.Namespace, method: str, path: str, body: dict | None = None,
         params: dict | None = None) -> dict:
    """Send one request to the server named by --server and return its JSON body."""
    from controlserver.core.tls import client_ssl_context

    verify = client_ssl_context(Path(args.ca_file) if args.ca_file else None)
    headers = {"Authorization": f"Bearer {read_token(args)}"}
    with httpx.Client(base_url=args.server, headers=headers, verify=verify, timeout=30) as client:
        try:
            response = client.request(method, path, json=body, params=params)
        except httpx.HTTPError as exc:
            raise CommandFailed(f"cannot reach the control server at {args.server}: {exc}") from None
    if response.status_code >= 400:
        try:
            message = response.json().get("message", response.text)
        except ValueError:
            message = response.text
        raise CommandFailed(f"HTTP {response.status_code}: {message}")
    return response.json()


# -- status ------------------------------------------------------------------------------------

def health_of(frontend: dict) -> tuple[str, str]:
    """Return the health word shown for a frontend and its style."""
    if not frontend["in_inventory"]:
        return "removed", "dim"
    if not frontend["zrok_admin_secret"]:
        return "no-secret", "yellow"
    if not frontend["healthy"]:
        return "UNHEALTHY", "bold red"
    return "healthy", "green"


def load_style(load: float) -> str:
    if load >= 1:
        return "bold red"
    if load >= 0.8:
        return "yellow"
    return ""


def status(args: argparse.Namespace) -> int:
    frontends = call(args, "GET", "/v1/frontends")["frontends"]
    if args.json:
        print_json(frontends)
        return 0

    table = Table(box=None, pad_edge=False, header_style="bold")
    for header in ("FRONTEND", "REGION", "LOCATION"):
        table.add_column(header, no_wrap=True)
    for header in ("ASSIGNED", "CAPACITY", "LOAD"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("HEALTH", no_wrap=True)
    table.add_column("DRAINING", no_wrap=True)
    table.add_column("LAST PROBE ERROR", overflow="ellipsis", no_wrap=True, max_width=60)
    for frontend in frontends:
        health, health_style = health_of(frontend)
        # Cells are Text objects, so brackets in names or probe errors are not read as rich markup.
        table.add_row(
            Text(frontend["name"]), Text(frontend["region"]), Text(frontend["location"]),
            Text(str(frontend["assigned"])), Text(str(frontend["capacity"])),
            Text(f"{frontend['load'] * 100:.0f}%", style=load_style(frontend["load"])),
            Text(health, style=health_style), Text("yes", style="yellow") if frontend["draining"] else Text("no"),
            Text(frontend["last_probe_error"] or ""),
        )

    console = make_console()
    print_table(console, table)
    total = sum(f["assigned"] for f in frontends)
    capacity = sum(f["capacity"] for f in frontends if f["in_inventory"])
    console.print(f"\n{total} printers assigned, capacity {capacity}")
    return 0


SHARE_STYLES = {"active": "green", "failed": "bold red", "stopped": "red"}


def printers(args: argparse.Namespace) -> int:
    """List the printers, page by page from the API, as a table or JSON."""
    rows: list[dict] = []
    after = None
    while True:
        params = {"limit": 1000, "after": after, "frontend": args.frontend}
        page = call(args, "GET", "/v1/printers", params={k: v for k, v in params.items() if v is not None})
        rows.extend(page["printers"])
        after = page["next_after"]
        if not after:
            break
    if args.json:
        print_json(rows)
        return 0

    table = Table(box=None, pad_edge=False, header_style="bold")
    for header in ("PRINTER", "FRONTEND", "REGION", "SHARE", "LAST HEARTBEAT", "MOONRAKER", "KLIPPY"):
        table.add_column(header, no_wrap=True)
    table.add_column("PROBE FAILURES", justify="right", no_wrap=True)
    table.add_column("AGENT", no_wrap=True)
    now = datetime.now(UTC)
    for printer in rows:
        share = printer["share_state"] or "unknown"
        table.add_row(
            Text(printer["printer_id"]), Text(printer["frontend"] or "none"), Text(printer["region"] or ""),
            Text(share, style=SHARE_STYLES.get(share, "yellow")), Text(_age(printer["last_heartbeat_at"], now)),
            Text(printer["moonraker_state"] or ""), Text(printer["klippy_state"] or ""),
            Text(str(printer["probe_failures"]), style="red" if printer["probe_failures"] else ""),
            Text(printer["agent_version"] or ""),
        )
    console = make_console()
    print_table(console, table)
    active = sum(1 for printer in rows if printer["share_state"] == "active")
    console.print(f"\n{len(rows)} printers, {active} with an active share")
    return 0


def _age(timestamp: str | None, now: datetime) -> str:
    if timestamp is None:
        return "never"
    seconds = max(0, int((now - datetime.fromisoformat(timestamp)).total_seconds()))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


# -- drain -------------------------------------------------------------------------------------

def drain(args: argparse.Namespace) -> int:
    """Drain or undrain a frontend. A drain waits until its printers have moved, unless --no-wait."""
    frontend = call(args, "POST", f"/v1/frontends/{args.frontend}/{args.command}")
    total = frontend["assigned"]
    if args.command == "undrain" or args.no_wait:
        if args.json:
            print_json(frontend)
        else:
            verb = "draining" if frontend["draining"] else "taking printers again"
            print(f"frontend {frontend['name']} is {verb} ({total} printers assigned)")
        return 0

    try:
        remaining, outcome = _wait_for_drain(args, total)
    except KeyboardInterrupt:
        print(f"stopped waiting; frontend {args.frontend} keeps draining on the server", file=sys.stderr)
        return 130
    moved = total - remaining
    if args.json:
        print_json({"frontend": args.frontend, "total": total, "moved": moved, "remaining": remaining,
                    "outcome": outcome})
    elif outcome == "done":
        print(f"frontend {args.frontend} is drained: {moved} of {total} printers moved")
    if outcome == "undrained":
        print(f"error: frontend {args.frontend} was undrained while waiting: {moved} of {total} printers moved",
              file=sys.stderr)
        return 1
    if outcome == "timeout":
        print(f"error: timed out after {args.timeout:g} s with {remaining} of {total} printers still on "
              f"{args.frontend}; the drain goes on. If it does not progress, the other frontends may be "
              "full or the monitor may not run (see /readyz and the server log)", file=sys.stderr)
        return 1
    return 0


def _wait_for_drain(args: argparse.Namespace, total: int) -> tuple[int, str]:
    """Poll the frontend until no printer is assigned to it, and return the printers left and the
    outcome (done, undrained or timeout)."""
    deadline = time.monotonic() + args.timeout if args.timeout else None
    console = make_console()
    show_bar = console.is_terminal and not args.json
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("printers moved"), TimeElapsedColumn(), console=console, disable=not show_bar)
    last_reported = None
    with progress:
        task = progress.add_task(f"draining {args.frontend}", total=total)
        while True:
            frontend = _frontend(args, args.frontend)
            remaining = frontend["assigned"]
            moved = max(0, total - remaining)
            progress.update(task, completed=moved)
            if not show_bar and not args.json and moved != last_reported:
                print(f"{args.frontend}: {moved}/{total} printers moved", flush=True)
                last_reported = moved
            if remaining == 0:
                return 0, "done"
            if not frontend["draining"]:
                return remaining, "undrained"
            if deadline is not None and time.monotonic() >= deadline:
                return remaining, "timeout"
            time.sleep(args.interval)


def _frontend(args: argparse.Namespace, name: str) -> dict:
    for frontend in call(args, "GET", "/v1/frontends")["frontends"]:
        if frontend["name"] == name:
            return frontend
    raise CommandFailed(f"frontend {name} disappeared from the control server while waiting")


# -- access ------------------------------------------------------------------------------------

def access(args: argparse.Namespace) -> int:
    printer = call(args, "GET", f"/v1/printers/{args.printer_id}/access")
    if args.json:
        print_json(printer)
        return 0

    auth = printer["share_auth"]
    api_key = printer["moonraker_api_key"]
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(no_wrap=True)
    rows = [("printer", printer["printer_id"]), ("frontend", printer["frontend"] or "none"),
            ("public URL", printer["public_url"] or "none")]
    if auth["mode"] == "basic":
        rows.append(("basic auth", f"{auth['username']}:{auth['password']}"))
    rows.append(("X-Api-Key", api_key or "none reported by the agent"))
    if printer["public_url"]:
        command = ["curl"]
        if auth["mode"] == "basic":
            command += ["-u", f"{auth['username']}:{auth['password']}"]
        if api_key:
            command += ["-H", f"X-Api-Key: {api_key}"]
        command.append(f"{printer['public_url']}/server/info")
        rows.append(("try", shlex.join(command)))
    for label, value in rows:
        table.add_row(label, Text(value))

    print_table(make_console(), table)
    errors = make_console(stderr=True)
    for warning in printer["warnings"]:
        errors.print(Text.assemble(("warning:", "yellow"), " ", warning))
    return 0


# -- tokens ------------------------------------------------------------------------------------

def enrollment_token(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"description": args.description}
    if args.expires_in is not None:
        body["expires_in_s"] = args.expires_in
    if args.max_uses is not None:
        body["max_uses"] = args.max_uses
    created = call(args, "POST", "/v1/enrollment-tokens", body)
    if args.json:
        print_json(created)
    else:
        print(created["token"])
    return 0


def operator_token(args: argparse.Namespace) -> int:
    """Make an operator token locally: the token goes to stdout, the line for the server's file to stderr."""
    from controlserver.core.roles import check_operator_name, new_operator_token

    try:
        name = check_operator_name(args.name, "operator-token")
    except ValueError as exc:
        raise CommandFailed(str(exc)) from None
    token, stored = new_operator_token()
    if args.json:
        print_json({"name": name, "token": token, "file_entry": {name: stored}})
        return 0
    print(token)
    print(f"Give the token above to {name}; it is shown only once. Add this line under `operator_tokens:` in the "
          f"operator tokens file and reload the server (SIGHUP):\n  {name}: \"{stored}\"", file=sys.stderr)
    return 0
