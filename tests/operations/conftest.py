"""Fixtures of the operator-guide tests: the control server's fake zrok controllers, inventories and
server processes, shared with tests/controlserver."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.controlserver.conftest import (  # noqa: F401  (fixtures)
    ADMIN_TOKEN,
    REPO,
    ServerProcess,
    database_engine,
    database_url,
    fleet_files,
    postgres_cluster,
    postgres_url,
    server_process,
    zrok_eu,
    zrok_us,
)


def run_controlserver(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m controlserver ARGS` as an operator would, from the repository."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "controlserver", *args], env=environment, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
