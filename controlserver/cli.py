"""Command line: `serve` runs the server; the other commands call a running server's admin API."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import httpx
from pydantic import ValidationError

from controlserver import __version__
from controlserver import backup as backup_command
from controlserver import enrollment_tokens as enrollment_tokens_command
from controlserver.core.settings import check_secret

DEFAULT_SERVER = "https://127.0.0.1:8443"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    return args.func(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m controlserver", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command")

    serve = commands.add_parser("serve", help="run the control server")
    serve.add_argument("--inventory", type=Path, help="Ansible inventory file or directory (FLEET_INVENTORY)")
    serve.add_argument("--database", dest="database_url",
                       help="SQLAlchemy URL, e.g. sqlite:////var/lib/printer-fleet/control.db or "
                            "postgresql://user@host/db (FLEET_DATABASE_URL)")
    serve.add_argument("--listen", help="HOST:PORT to listen on (FLEET_LISTEN, default 127.0.0.1:8443)")
    serve.add_argument("--admin-token-file", type=Path,
                       help="file with the admin API token, used when FLEET_ADMIN_TOKEN is unset")
    serve.add_argument("--secrets-file", type=Path,
                       help="YAML with zrok_admin_secrets (default /etc/printer-fleet/secrets.yml)")
    serve.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate chain (PEM)")
    serve.add_argument("--tls-key", type=Path, help="private key of --tls-cert (PEM)")
    serve.add_argument("--ca-file", type=Path,
                       help="CA certificates (PEM) trusted for outgoing HTTPS besides the system trust store")
    serve.add_argument("--log-level", default=os.environ.get("FLEET_LOG_LEVEL", "info"),
                       choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=_serve)

    def client_command(name: str, help_text: str):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--server", default=os.environ.get("FLEET_SERVER", DEFAULT_SERVER),
                             help=f"control server URL (FLEET_SERVER, default {DEFAULT_SERVER})")
        command.add_argument("--admin-token-file", type=Path,
                             help="file with the admin token, used when FLEET_ADMIN_TOKEN is unset")
        command.add_argument("--ca-file", type=Path, default=os.environ.get("FLEET_CA_FILE"),
                             help="CA certificates (PEM) to verify the server with, besides the system trust store")
        return command

    status = client_command("status", "print the frontends with load, health and drain state as a table")
    status.add_argument("--json", action="store_true", help="print the API's JSON instead of a table")
    status.set_defaults(func=_status)

    for name, help_text in (("drain", "stop assigning printers to a frontend and move its printers away"),
                            ("undrain", "let a drained frontend take printers again")):
        command = client_command(name, help_text)
        command.add_argument("frontend", help="frontend name as in the inventory")
        command.set_defaults(func=_drain)

    token = client_command("enrollment-token", "create an enrollment token and print it")
    token.add_argument("--expires-in", type=int, metavar="SECONDS", help="validity in seconds (default: no expiry)")
    token.add_argument("--max-uses", type=int, metavar="N", help="how many printers may enroll with it")
    token.add_argument("--description", default="", help="note stored with the token")
    token.set_defaults(func=_enrollment_token)

    backup_command.add_parser(commands)
    enrollment_tokens_command.add_parser(commands)
    return parser


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from controlserver.api.app import create_app
    from controlserver.core.logging import configure_logging
    from controlserver.core.settings import Settings
    from controlserver.errors import InventoryError
    from controlserver.inventory import load_inventory

    overrides = {key: value for key, value in vars(args).items()
                 if key in Settings.model_fields and value is not None}
    try:
        settings = Settings(**overrides)
        settings.require_admin_token()
        load_inventory(settings.inventory)
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "settings"
            print(f"error: {field}: {error['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return 2
    except (ValueError, InventoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    configure_logging(args.log_level)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.listen_host,
        port=settings.listen_port,
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1


def _client(args: argparse.Namespace) -> httpx.Client:
    token = os.environ.get("FLEET_ADMIN_TOKEN")
    if not token and args.admin_token_file:
        token = args.admin_token_file.read_text()
    if not token:
        raise SystemExit("error: no admin token: set FLEET_ADMIN_TOKEN or pass --admin-token-file")
    try:
        token = check_secret(token, "admin token")
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None

    from controlserver.core.tls import client_ssl_context

    verify = client_ssl_context(Path(args.ca_file) if args.ca_file else None)
    return httpx.Client(base_url=args.server, headers={"Authorization": f"Bearer {token}"}, verify=verify,
                        timeout=30)


def _call(args: argparse.Namespace, method: str, path: str, body: dict | None = None) -> dict:
    with _client(args) as client:
        try:
            response = client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise SystemExit(f"error: cannot reach the control server at {args.server}: {exc}") from None
    if response.status_code >= 400:
        try:
            message = response.json().get("message", response.text)
        except ValueError:
            message = response.text
        raise SystemExit(f"error: HTTP {response.status_code}: {message}")
    return response.json()


def _status(args: argparse.Namespace) -> int:
    frontends = _call(args, "GET", "/v1/frontends")["frontends"]
    if args.json:
        print(json.dumps(frontends, indent=2))
        return 0
    header = ("FRONTEND", "REGION", "LOCATION", "ASSIGNED", "CAPACITY", "LOAD", "HEALTH", "DRAINING", "LAST PROBE ERROR")
    rows = [header]
    for f in frontends:
        health = "healthy" if f["healthy"] else "UNHEALTHY"
        if not f["in_inventory"]:
            health = "removed"
        elif not f["zrok_admin_secret"]:
            health = "no-secret"
        rows.append((f["name"], f["region"], f["location"], str(f["assigned"]), str(f["capacity"]),
                     f"{f['load'] * 100:.0f}%", health, "yes" if f["draining"] else "no",
                     (f["last_probe_error"] or "")[:60]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    total = sum(f["assigned"] for f in frontends)
    capacity = sum(f["capacity"] for f in frontends if f["in_inventory"])
    print(f"\n{total} printers assigned, capacity {capacity}")
    return 0


def _drain(args: argparse.Namespace) -> int:
    frontend = _call(args, "POST", f"/v1/frontends/{args.frontend}/{args.command}")
    verb = "draining" if frontend["draining"] else "taking printers again"
    print(f"frontend {frontend['name']} is {verb} ({frontend['assigned']} printers assigned)")
    return 0


def _enrollment_token(args: argparse.Namespace) -> int:
    body = {"description": args.description}
    if args.expires_in is not None:
        body["expires_in_s"] = args.expires_in
    if args.max_uses is not None:
        body["max_uses"] = args.max_uses
    print(_call(args, "POST", "/v1/enrollment-tokens", body)["token"])
    return 0
