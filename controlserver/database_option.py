"""The `--database` option of the commands that work on the control server's database directly."""

from __future__ import annotations

import argparse
import os
import sys


def add_database_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    """Add `--database` (stored as `database_url`), which defaults to FLEET_DATABASE_URL."""
    parser.add_argument("--database", dest="database_url", default=os.environ.get("FLEET_DATABASE_URL"),
                        help=help_text)


def database_url_missing(args: argparse.Namespace) -> bool:
    """Print an error and return True if neither --database nor FLEET_DATABASE_URL gave a URL."""
    if args.database_url:
        return False
    print("error: --database is missing: pass the server's database URL or set FLEET_DATABASE_URL",
          file=sys.stderr)
    return True
