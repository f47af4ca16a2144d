"""Checks a printer configured by the printer_agent role, on real hosts.

Run against any inventory whose printers group contains configured printers:

    pytest tests/testinfra/test_printer_agent.py --hosts=ansible://printers --ansible-inventory=<inventory>

Paths follow the role's defaults; an inventory that overrides them sets the same variables, which
these tests read from the host's Ansible variables.
"""

from __future__ import annotations

import base64
import json
import shlex

import pytest

pytestmark = pytest.mark.lab

SERVICE = "printer-fleet-agent"
UNIT_FILE = f"/etc/systemd/system/{SERVICE}.service"

# systemd sandboxing options the unit must set, with the values the role writes.
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "read-only",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "Restart": "always",
}


# The hosts these checks run on when --hosts is not given: this group of --ansible-inventory
# (the lab's inventory when pytest runs the lab, or a production inventory). Without either
# option the checks are skipped (tests/testinfra/conftest.py).
testinfra_hosts = ["ansible://printers"]


@pytest.fixture
def role_vars(host):
    """The role's paths for this host: inventory variables over the role's defaults."""
    variables = host.ansible.get_variables()
    data_path = variables.get("printer_agent_moonraker_data_path", "/home/pi/printer_data")
    config_file = variables.get("printer_agent_moonraker_config_file", f"{data_path}/config/moonraker.conf")
    return {
        "state_dir": variables.get("printer_agent_state_dir", "/var/lib/printer-fleet-agent"),
        "config_dir": variables.get("printer_agent_config_dir", "/etc/printer-fleet-agent"),
        "data_path": data_path,
        "moonraker_conf": config_file,
        "include_name": variables.get("printer_agent_moonraker_include_name", "printer-fleet.conf"),
        "moonraker_url": variables.get("printer_agent_moonraker_url", "http://127.0.0.1:7125"),
    }


def test_agent_service_active_and_enabled(host):
    service = host.service(SERVICE)

    assert service.is_running
    assert service.is_enabled


def test_token_file_root_only(host, role_vars):
    token = host.file(f"{role_vars['state_dir']}/printer_token")

    assert token.exists
    assert token.user == "root"
    assert token.mode == 0o600


def test_state_dir_root_only(host, role_vars):
    state_dir = host.file(role_vars["state_dir"])

    assert state_dir.user == "root"
    assert state_dir.mode == 0o700


def test_config_not_readable_by_others(host, role_vars):
    config = host.file(f"{role_vars['config_dir']}/agent.json")

    assert config.exists
    assert config.user == "root"
    assert config.mode & 0o077 == 0


def test_unit_is_hardened(host):
    properties = host.check_output(f"systemctl show {SERVICE} -p " + " -p ".join(HARDENING))
    values = dict(line.split("=", 1) for line in properties.splitlines() if "=" in line)

    for option, expected in HARDENING.items():
        assert values.get(option) == expected, f"{option}={values.get(option)!r}, expected {expected!r}"


def test_unit_drops_capabilities(host):
    capabilities = host.check_output(f"systemctl show {SERVICE} -p CapabilityBoundingSet --value")

    assert capabilities.split() == ["cap_dac_read_search"]


def test_agent_logs_no_secret(host, role_vars):
    token = host.check_output(f"cat {role_vars['state_dir']}/printer_token").strip()
    journal = host.check_output(f"journalctl -u {SERVICE} --no-pager -o cat -n 2000")

    assert token
    assert token not in journal


def test_moonraker_include_present(host, role_vars):
    conf = host.file(role_vars["moonraker_conf"])
    include = host.file(f"{conf.path.rsplit('/', 1)[0]}/{role_vars['include_name']}")

    assert f"[include {role_vars['include_name']}]" in conf.content_string
    assert include.exists
    assert "[authorization]" in include.content_string


def run_python(host, script: str, *args: str) -> str:
    """Run a Python script on the host with python3, passing it through base64 to avoid shell quoting."""
    encoded = base64.b64encode(script.encode()).decode()
    quoted = " ".join(shlex.quote(arg) for arg in args)
    return host.check_output(f"echo {encoded} | base64 -d | python3 - {quoted}").strip()


HTTP_STATUS_SCRIPT = """
import sys, urllib.request, urllib.error
request = urllib.request.Request(sys.argv[1], headers=dict(h.split(": ", 1) for h in sys.argv[2:]))
try:
    print(urllib.request.urlopen(request, timeout=10).status)
except urllib.error.HTTPError as exc:
    print(exc.code)
"""

API_KEY_SCRIPT = """
import sqlite3, sys
row = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True).execute(
    "SELECT password FROM authorized_users WHERE username = '_API_KEY_USER_'").fetchone()
print(row[0])
"""


@pytest.mark.parametrize("forwarded", ["X-Real-Ip: 127.0.0.1", "X-Forwarded-For: 127.0.0.1", None])
def test_moonraker_rejects_request_without_api_key(host, role_vars, forwarded):
    """A tunnelled request arrives from 127.0.0.1 and may carry any forwarding header: it needs the API key."""
    headers = [forwarded] if forwarded else []

    status = run_python(host, HTTP_STATUS_SCRIPT, f"{role_vars['moonraker_url']}/server/info", *headers)

    assert status == "401"


def test_moonraker_accepts_api_key(host, role_vars):
    api_key = run_python(host, API_KEY_SCRIPT, f"{role_vars['data_path']}/database/moonraker-sql.db")

    status = run_python(host, HTTP_STATUS_SCRIPT, f"{role_vars['moonraker_url']}/server/info", f"X-Api-Key: {api_key}")

    assert status == "200"


def test_zrok_environment_enabled(host, role_vars):
    environment = host.file(f"{role_vars['state_dir']}/.zrok2/environment.json")

    assert environment.exists
    assert environment.user == "root"
    assert environment.mode & 0o077 == 0


def test_agent_registered_and_sharing(host, role_vars):
    status = json.loads(host.file(f"{role_vars['state_dir']}/status.json").content_string)

    assert status["registered"] is True
    assert status["share_state"] == "active"
    assert status["public_url"].startswith("https://")
