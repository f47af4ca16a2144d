"""Shared fixtures. `lab_hosts` boots the lab fleet once per session and removes it at the end;
`lab` also configures it with the playbooks.

Tests that use either carry the `lab` marker. The testinfra suites under tests/testinfra/ run
against the configured lab unless `--ansible-inventory` names another inventory (a production
one), in which case the lab is not started for them.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import pytest

TESTINFRA_DIR = Path(__file__).resolve().parent / "testinfra"
DISRUPTIVE_TESTS = Path(__file__).resolve().parent / "e2e" / "test_moves.py"


def pytest_addoption(parser):
    group = parser.getgroup("lab", "lab fleet")
    group.addoption("--lab-keep", action="store_true",
                    help="leave the lab running after the session (remove it with `make lab-down`)")


def pytest_configure(config):
    # testinfra expands `ansible://group` hosts while collecting, so the lab inventory must exist
    # before the lab boots. Its content depends only on the fixed lab topology.
    from tests.lab import deploy
    deploy.ensure_ansible_on_path()
    if hasattr(config.option, "ansible_inventory") and not config.option.ansible_inventory:
        from tests.lab import hosts, inventory, lab
        inventory.write_inventory(hosts.SSH_KEY, lab.PKI_DIR)
        config.option.ansible_inventory = str(inventory.INVENTORY_FILE)
        config._fleet_lab_inventory = True
    else:
        config._fleet_lab_inventory = False


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    # Runs before `-m` selection, so `-m "not lab"` also skips the testinfra suites on the lab.
    if config._fleet_lab_inventory:
        for item in items:
            if TESTINFRA_DIR in Path(str(item.fspath)).parents:
                item.add_marker(pytest.mark.lab)
    # Failover and drain disturb the fleet: run them after every other test (a stable sort).
    items.sort(key=lambda item: Path(str(item.fspath)) == DISRUPTIVE_TESTS)


@dataclasses.dataclass
class Lab:
    """A running, configured lab: paths, secrets and helpers for the checks."""

    inventory_file: Path
    ca_file: Path
    ssh_key: Path

    def ssh(self, host: str, command: str, stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a shell command on a lab host as root; return its exit status and output."""
        from tests.lab import topology
        address = topology.host_by_name(host).address
        return subprocess.run(
            ["ssh", "-i", str(self.ssh_key), "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
             f"root@{address}", command],
            input=stdin, capture_output=True, text=True, timeout=timeout)

    def client_get(self, url: str, headers: dict[str, str] | None = None,
                   basic_auth: tuple[str, str] | None = None) -> tuple[int, str]:
        """GET `url` with curl on client-1; return the HTTP status (0: no response) and the body.

        Credentials travel in curl's config on stdin, so they appear in no command line.
        """
        config = [f"url = {_curl_quote(url)}", "max-time = 10", "silent", "show-error",
                  'write-out = "\\n%{http_code}"']
        for name, value in (headers or {}).items():
            config.append(f"header = {_curl_quote(f'{name}: {value}')}")
        if basic_auth:
            config.append(f"user = {_curl_quote(':'.join(basic_auth))}")
        result = self.ssh("client-1", "curl --config -", stdin="\n".join(config) + "\n")
        body, _, status = result.stdout.rpartition("\n")
        return (int(status) if status.strip().isdigit() else 0), body

    def control_server(self):
        from tests.lab import deploy
        return deploy.control_server_client()

    def secrets(self) -> dict:
        from tests.lab import inventory
        return inventory.read_secrets()


def _curl_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.fixture(scope="session")
def lab_hosts(request) -> Lab:
    """Boot the lab hosts once per session, without configuring them; remove them at the end.

    Hosts left running by `make lab` are reused and left running.
    """
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces, overlay mounts, systemd-nspawn)")
    from tests.lab import deploy, hosts, inventory, lab as lab_module, topology

    already_running = all(hosts.running_pid(h) for h in topology.HOSTS)
    keep = request.config.getoption("--lab-keep")
    # Show the lab's progress as it happens: building the image takes minutes.
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if not already_running:
        with capture.global_and_fixture_disabled():
            print()
            lab_module.down()
            try:
                lab_module.up_hosts()
            except BaseException:
                if not keep:
                    lab_module.down()
                raise
    yield Lab(inventory.INVENTORY_FILE, deploy.LAB_CA_FILE, hosts.SSH_KEY)
    if not already_running and not keep:
        with capture.global_and_fixture_disabled():
            lab_module.down()


@pytest.fixture(scope="session")
def lab(request, lab_hosts) -> Lab:
    """The lab configured by the real playbooks, with every printer registered.

    The playbooks run once per session, or not at all when `make lab` configured the lab.
    """
    from tests.lab import deploy

    if not deploy.DEPLOYED_MARKER.exists():
        capture = request.config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled():
            deploy.deploy_and_report()
    return lab_hosts


@pytest.fixture(autouse=True)
def _lab_for_testinfra(request):
    # The testinfra suites check configured hosts; the lab's inventory names them.
    if request.config._fleet_lab_inventory and TESTINFRA_DIR in Path(str(request.node.fspath)).parents:
        request.getfixturevalue("lab")
