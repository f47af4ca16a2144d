"""Shared by the testinfra suites: they check remote hosts and never the machine running pytest."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _require_inventory(request):
    if request.config.getoption("hosts", None) or request.config.getoption("ansible_inventory", None):
        return
    group = getattr(request.module, "testinfra_hosts", ["ansible://<group>"])[0]
    pytest.skip(f"needs an inventory: --ansible-inventory=<inventory> [--hosts={group}]")
