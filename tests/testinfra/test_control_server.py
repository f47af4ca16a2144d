"""Checks of a host configured by playbooks/control_server.yml, for any inventory:

    pytest tests/testinfra/test_control_server.py --hosts=ansible://control_servers \
        --ansible-inventory=inventory/generated/fleet.yml

Without an inventory the tests are skipped: they must never run against the machine running pytest.
"""

import json

import pytest

UNIT = "printer-fleet-control"

# (path, owner, group, mode) of the files that contain secrets or private keys.
SECRET_FILES = [
    ("/etc/printer-fleet/admin-token", "printer-fleet", "printer-fleet", 0o600),
    ("/etc/printer-fleet/secrets.yml", "printer-fleet", "printer-fleet", 0o600),
    ("/etc/printer-fleet/tls/privkey.pem", "root", "printer-fleet", 0o640),
]

FETCH = (
    "import json, ssl, sys, urllib.request, urllib.error\n"
    "context = ssl._create_unverified_context()\n"
    "try:\n"
    "    response = urllib.request.urlopen(sys.argv[1], timeout=10, context=context)\n"
    "    status, body = response.status, response.read()\n"
    "except urllib.error.HTTPError as error:\n"
    "    status, body = error.code, error.read()\n"
    "print(json.dumps({'status': status, 'body': body.decode(errors='replace')}))\n"
)


# The hosts these checks run on when --hosts is not given: this group of --ansible-inventory
# (the lab's inventory when pytest runs the lab, or a production inventory). Without either
# option the checks are skipped (tests/testinfra/conftest.py).
testinfra_hosts = ["ansible://control_servers"]


@pytest.fixture
def listen(host):
    """Return (address, port) of the control server as the inventory sets it, else the default."""
    address, _, port = host.ansible.get_variables().get("control_server_listen", "0.0.0.0:8443").rpartition(":")
    return address, int(port)


@pytest.fixture
def base_url(host, listen):
    tls = host.ansible.get_variables().get("control_server_tls_enabled", True)
    return f"{'https' if tls else 'http'}://127.0.0.1:{listen[1]}"


def fetch(host, url):
    command = host.run("python3 -c %s %s", FETCH, url)
    assert command.rc == 0, command.stderr
    return json.loads(command.stdout)


def test_service_active_and_enabled(host):
    unit = host.service(UNIT)

    assert unit.is_running
    assert unit.is_enabled


def test_service_listens(host, listen):
    address, port = listen

    assert host.socket(f"tcp://{address}:{port}").is_listening


def test_service_runs_from_venv(host):
    pid = host.check_output("systemctl show --property=MainPID --value %s.service", UNIT)
    command_line = host.file(f"/proc/{pid}/cmdline").content_string.split("\0")

    assert command_line[0] == "/opt/printer-fleet/venv/bin/python"
    assert command_line[1:4] == ["-m", "controlserver", "serve"]


def test_service_runs_unprivileged(host):
    pid = host.check_output("systemctl show --property=MainPID --value %s.service", UNIT)

    assert pid != "0"
    assert host.check_output("ps -o user= -p %s", pid) == "printer-fleet"


def test_unit_restarts_always_and_is_sandboxed(host):
    properties = dict(
        line.split("=", 1)
        for line in host.check_output(
            "systemctl show --property=Restart,NoNewPrivileges,ProtectSystem,ProtectHome,PrivateTmp,User %s.service",
            UNIT,
        ).splitlines()
    )

    assert properties["Restart"] == "always"
    assert properties["NoNewPrivileges"] == "yes"
    assert properties["ProtectSystem"] == "strict"
    assert properties["ProtectHome"] == "yes"
    assert properties["PrivateTmp"] == "yes"
    assert properties["User"] == "printer-fleet"


@pytest.mark.parametrize(("path", "owner", "group", "mode"), SECRET_FILES)
def test_secret_file_mode(host, path, owner, group, mode):
    secret = host.file(path)
    if path.endswith("privkey.pem") and not secret.exists:
        pytest.skip("TLS is terminated in front of the control server on this host")

    assert secret.exists
    assert secret.user == owner
    assert secret.group == group
    assert secret.mode == mode


@pytest.mark.parametrize("path", [path for path, _, _, _ in SECRET_FILES])
def test_secret_unreadable_by_other_users(host, path):
    if not host.file(path).exists:
        pytest.skip(f"{path} is not used on this host")

    read = host.run("runuser -u nobody -- cat %s", path)

    assert read.rc != 0
    assert read.stdout == ""


def test_config_directory_closed_to_others(host):
    directory = host.file("/etc/printer-fleet")

    assert directory.user == "root"
    assert directory.group == "printer-fleet"
    assert directory.mode == 0o750


def test_secrets_file_lists_frontends(host):
    secrets = host.file("/etc/printer-fleet/secrets.yml").content_string

    assert secrets.startswith("zrok_admin_secrets:")


def test_requirements_installed_offline(host):
    wheels = host.file("/opt/printer-fleet/wheelhouse").listdir()

    check = host.run("/opt/printer-fleet/venv/bin/python -m pip check")
    # zrok2 is installed without its dependencies on purpose: only its REST client is used.
    problems = [line for line in check.stdout.splitlines() if not line.startswith("zrok2 ")]

    assert any(name.startswith("printer_fleet_controlserver-") for name in wheels)
    assert problems == []


def test_healthz_answers(host, base_url):
    answer = fetch(host, f"{base_url}/healthz")

    assert answer["status"] == 200


def test_readyz_answers(host, base_url):
    answer = fetch(host, f"{base_url}/readyz")

    assert answer["status"] == 200


def test_admin_api_needs_token(host, base_url):
    answer = fetch(host, f"{base_url}/v1/frontends")

    assert answer["status"] == 401
