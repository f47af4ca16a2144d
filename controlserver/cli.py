"""Command line: `serve` runs the server; `operator-token` works locally; the other commands call a
running server's admin API (controlserver.commands)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from controlserver import __version__
from controlserver import backup as backup_command
from controlserver import commands as ops
from controlserver import enrollment_tokens as enrollment_tokens_command
from controlserver.commands import DEFAULT_SERVER


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
    serve.add_argument("--operator-tokens-file", type=Path,
                       help="YAML with operator token hashes, reloaded on SIGHUP (FLEET_OPERATOR_TOKENS_FILE)")
    serve.add_argument("--secrets-file", type=Path,
                       help="YAML with zrok_admin_secrets (default /etc/printer-fleet/secrets.yml)")
    serve.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate chain (PEM)")
    serve.add_argument("--tls-key", type=Path, help="private key of --tls-cert (PEM)")
    serve.add_argument("--ca-file", type=Path,
                       help="CA certificates (PEM) trusted for outgoing HTTPS besides the system trust store")
    serve.add_argument("--log-level", default=os.environ.get("FLEET_LOG_LEVEL", "info"),
                       choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=_serve)

    def client_command(name: str, help_text: str, json_help: str | None = None):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--server", default=os.environ.get("FLEET_SERVER", DEFAULT_SERVER),
                             help=f"control server URL (FLEET_SERVER, default {DEFAULT_SERVER})")
        command.add_argument("--token-file", "--admin-token-file", dest="token_file", type=Path,
                             help="file with your admin or operator token, used when FLEET_TOKEN and "
                                  "FLEET_ADMIN_TOKEN are unset")
        command.add_argument("--ca-file", type=Path, default=os.environ.get("FLEET_CA_FILE"),
                             help="CA certificates (PEM) to verify the server with, besides the system trust store")
        if json_help:
            command.add_argument("--json", action="store_true", help=json_help)
        return command

    status = client_command("status", "print the frontends with load, health and drain state as a table",
                            "print the API's JSON instead of a table")
    status.set_defaults(func=ops.status)

    printers = client_command("printers", "print the printers with share state, last heartbeat and probe "
                              "failures as a table", "print the printers as JSON")
    printers.add_argument("--frontend", help="only the printers assigned to this frontend")
    printers.set_defaults(func=ops.printers)

    drain = client_command("drain", "stop assigning printers to a frontend, move its printers away and show "
                           "the progress until none is left", "print one JSON object when done")
    drain.add_argument("frontend", help="frontend name as in the inventory")
    drain.add_argument("--no-wait", action="store_true", help="return once the drain has started")
    drain.add_argument("--timeout", type=float, metavar="SECONDS",
                       help="stop waiting after this many seconds, with exit status 1 (default: wait until done)")
    drain.add_argument("--interval", type=float, default=2.0, metavar="SECONDS",
                       help="seconds between two polls of the server (default 2)")
    drain.set_defaults(func=ops.drain)

    undrain = client_command("undrain", "let a drained frontend take printers again", "print the frontend as JSON")
    undrain.add_argument("frontend", help="frontend name as in the inventory")
    undrain.set_defaults(func=ops.drain, no_wait=True)

    access = client_command("access", "print a printer's public URL and the credentials to use it "
                            "(the server logs who asked)", "print the API's JSON")
    access.add_argument("printer_id", help="printer id as enrolled")
    access.set_defaults(func=ops.access)

    token = client_command("enrollment-token", "create an enrollment token and print it",
                           "print the token with its expiry and use limit as JSON")
    token.add_argument("--expires-in", type=int, metavar="SECONDS", help="validity in seconds (default: no expiry)")
    token.add_argument("--max-uses", type=int, metavar="N", help="how many printers may enroll with it")
    token.add_argument("--description", default="", help="note stored with the token")
    token.set_defaults(func=ops.enrollment_token)

    backup_command.add_parser(commands)
    enrollment_tokens_command.add_parser(commands)

    operator = commands.add_parser("operator-token", help="make a new operator token locally and print it, with "
                                   "the hash line for the server's operator tokens file")
    operator.add_argument("name", help="operator name that the server logs, e.g. alice")
    operator.add_argument("--json", action="store_true", help="print the token and the file entry as JSON")
    operator.set_defaults(func=ops.operator_token)
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
        settings.load_operator_tokens()
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
        create_app(settings, settle_gc=True),
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
