"""The booted lab itself, before any playbook: names, trust, isolation and the printers' Moonraker."""

import json

import pytest

from tests.lab import topology

pytestmark = pytest.mark.lab

NAMES = {
    "p-printer-01.lab-eu.fleet.test": "10.213.47.11",
    "api.lab-eu.fleet.test": "10.213.47.11",
    "p-printer-04.lab-us.fleet.test": "10.213.47.12",
    "api.lab-us.fleet.test": "10.213.47.12",
    "control.fleet.test": "10.213.47.5",
    "printer-03.fleet.test": "10.213.47.23",
}


@pytest.mark.parametrize("name", sorted(NAMES))
def test_client_resolves_lab_name(lab_hosts, name):
    result = lab_hosts.ssh("client-1", f"getent hosts {name}")

    assert result.returncode == 0, f"{name} does not resolve on client-1: {result.stderr}"
    assert result.stdout.split()[0] == NAMES[name]


def test_hosts_trust_lab_ca(lab_hosts):
    certificate = (lab_hosts.ca_file.parent / "control.fleet.test.crt").read_text()

    result = lab_hosts.ssh("client-1", "cat > /tmp/server.pem && openssl verify -CApath /etc/ssl/certs /tmp/server.pem",
                           stdin=certificate)

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("host", [h.name for h in topology.HOSTS])
def test_host_has_no_route_out(lab_hosts, host):
    result = lab_hosts.ssh(host, "ip route show default; ip -6 route show default")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("host", [h.name for h in topology.HOSTS])
def test_host_boots_systemd_without_failures(lab_hosts, host):
    result = lab_hosts.ssh(host, "systemctl is-system-running --wait; systemctl --failed --no-legend --plain")

    assert result.stdout.split("\n")[0] in ("running", "degraded")
    assert result.stdout.split("\n", 1)[1].strip() == "", f"failed units on {host}"


# Shell step run on a printer: put Moonraker's API key in $key, read from Moonraker's database
# (it exists once Moonraker has started), without printing it.
READ_API_KEY = (
    "for i in $(seq 30); do key=$(python3 -c \"import sqlite3; print(sqlite3.connect("
    "'/home/printer/printer_data/database/moonraker-sql.db').execute("
    "'SELECT password FROM authorized_users WHERE username=?', ('_API_KEY_USER_',)).fetchone()[0])\" "
    "2>/dev/null) && break; sleep 1; done"
)


@pytest.mark.parametrize("printer", [p.name for p in topology.PRINTERS])
def test_printer_moonraker_reports_klippy_ready(lab_hosts, printer):
    # Klippy needs a moment after boot; Moonraker retries its socket every 2 s. The request carries
    # Moonraker's API key because once printer_agent has run, loopback is no longer trusted.
    result = lab_hosts.ssh(printer, f"{READ_API_KEY}; for i in $(seq 30); do "
                                    "printf 'X-Api-Key: %s\\n' \"$key\" | curl -sf -H @- http://127.0.0.1:7125/server/info "
                                    "| grep -q '\"klippy_state\":\"ready\"' && break; sleep 1; done; "
                                    "printf 'X-Api-Key: %s\\n' \"$key\" | curl -sf -H @- http://127.0.0.1:7125/server/info")

    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)["result"]
    assert info["moonraker_version"] == "0.11.0"
    assert info["klippy_state"] == "ready"


def test_moonraker_rejects_untrusted_client(lab_hosts):
    address = topology.PRINTERS[0].address

    result = lab_hosts.ssh("client-1", f"curl -s -o /dev/null -w '%{{http_code}}' http://{address}:7125/server/info")

    assert result.stdout == "401"
