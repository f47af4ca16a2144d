"""Command line: python -m tests.lab up|down|status."""

from __future__ import annotations

import argparse
import os
import sys

from tests.lab import lab


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="build or reuse the image, boot the hosts and configure them")
    up.add_argument("--hosts-only", action="store_true",
                    help="boot the hosts and write the inventory, but run no playbook")
    commands.add_parser("down", help="stop and remove the lab; leaves nothing running")
    commands.add_parser("status", help="show the lab hosts")
    args = parser.parse_args(argv)

    if os.geteuid() != 0:
        parser.error("the lab needs root (network namespaces, overlay mounts, systemd-nspawn)")
    if args.command == "up":
        try:
            lab.up_hosts()
            if not args.hosts_only:
                from tests.lab import deploy
                deploy.deploy_and_report()
        except (RuntimeError, FileNotFoundError, TimeoutError) as error:
            print(f"lab: {error}\nlab: the hosts stay up for inspection; `make lab-down` removes them",
                  file=sys.stderr)
            return 1
        return 0
    if args.command == "down":
        lab.down()
        return 0
    return lab.status()


if __name__ == "__main__":
    sys.exit(main())
