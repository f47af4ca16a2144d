"""Checks of a host configured by roles/zrok_frontend, for any inventory:

    pytest tests/testinfra/test_zrok_frontend.py --hosts=ansible://zrok_frontends \
        --ansible-inventory=inventory/generated/fleet.yml

Ports and names follow the role's defaults unless the inventory overrides them for the host.
Without an inventory the tests are skipped: they must never run against the machine running pytest.
"""

import json

import pytest

SERVICES = ["ziti-controller", "ziti-router", "rabbitmq-server", "zrok2-controller", "zrok2-frontend",
            "zrok2-health", "caddy"]
ROLE_UNITS = ["ziti-controller", "ziti-router", "zrok2-controller", "zrok2-frontend", "zrok2-health"]

# (path, owner, group, mode) of every file that contains a secret or an identity.
SECRET_FILES = [
    ("/etc/zrok2/ctrl.yml", "root", "zrok2-controller", 0o640),
    ("/etc/zrok2/frontend.yml", "root", "zrok2-frontend", 0o640),
    ("/etc/zrok2/ziti-admin-password", "root", "root", 0o600),
    ("/var/lib/zrok2-frontend/.zrok2/identities/public.json", "zrok2-frontend", "zrok2-frontend", 0o600),
]

# Python one-liner run on the host: GET a URL (certificate not verified: the test reaches the
# host by IP address) and print the status and body as JSON.
FETCH = (
    "import json, ssl, sys, urllib.request, urllib.error\n"
    "request = urllib.request.Request(sys.argv[1], headers={'Host': sys.argv[2]} if len(sys.argv) > 2 else {})\n"
    "context = ssl._create_unverified_context()\n"
    "try:\n"
    "    response = urllib.request.urlopen(request, timeout=10, context=context)\n"
    "    status, body = response.status, response.read()\n"
    "except urllib.error.HTTPError as error:\n"
    "    status, body = error.code, error.read()\n"
    "print(json.dumps({'status': status, 'body': body.decode(errors='replace')}))\n"
)


# The hosts these checks run on when --hosts is not given: this group of --ansible-inventory
# (the lab's inventory when pytest runs the lab, or a production inventory). Without either
# option the checks are skipped (tests/testinfra/conftest.py).
testinfra_hosts = ["ansible://zrok_frontends"]


@pytest.fixture
def setting(host):
    """Return a role variable as the inventory sets it for the host, else the role default."""
    variables = host.ansible.get_variables()

    def get(name, default):
        return variables.get(name, default)

    return get


def fetch(host, url, host_header=None):
    arguments = [url] + ([host_header] if host_header else [])
    command = host.run("python3 -c %s " + " ".join(["%s"] * len(arguments)), FETCH, *arguments)
    assert command.rc == 0, command.stderr
    return json.loads(command.stdout)


def listening(host, port):
    """Return the local addresses that listen on TCP `port` ("0.0.0.0", "::", "127.0.0.1", ...)."""
    addresses = set()
    for socket_ in host.socket.get_listening_sockets():
        protocol, _, rest = socket_.partition("://")
        address, _, socket_port = rest.rpartition(":")
        if protocol == "tcp" and socket_port == str(port):
            addresses.add(address)
    return addresses


@pytest.mark.parametrize("service", SERVICES)
def test_service_active_and_enabled(host, service):
    unit = host.service(service)

    assert unit.is_running
    assert unit.is_enabled


@pytest.mark.parametrize(
    ("name", "default_port"),
    [("zrok_frontend_ziti_controller_port", 1280), ("zrok_frontend_ziti_router_port", 3022)],
)
def test_ziti_listens_publicly(host, setting, name, default_port):
    addresses = listening(host, setting(name, default_port))

    assert addresses & {"0.0.0.0", "::"}


@pytest.mark.parametrize(
    ("name", "default_port"),
    [
        ("zrok_frontend_controller_port", 18080),
        ("zrok_frontend_frontend_port", 8080),
        ("zrok_frontend_health_port", 18099),
        (None, 5672),  # RabbitMQ AMQP
        (None, 4369),  # Erlang port mapper
        (None, 25672),  # RabbitMQ distribution
    ],
)
def test_internal_port_listens_on_loopback_only(host, setting, name, default_port):
    port = setting(name, default_port) if name else default_port

    addresses = listening(host, port)

    assert addresses, f"nothing listens on port {port}"
    assert addresses <= {"127.0.0.1", "::1"}, f"port {port} listens on {sorted(addresses)}"


@pytest.mark.parametrize(("name", "default_port"), [("zrok_frontend_http_port", 80), ("zrok_frontend_https_port", 443)])
def test_caddy_listens_publicly(host, setting, name, default_port):
    addresses = listening(host, setting(name, default_port))

    assert addresses & {"0.0.0.0", "::"}


@pytest.mark.parametrize(("path", "owner", "group", "mode"), SECRET_FILES)
def test_secret_file_mode(host, path, owner, group, mode):
    secret = host.file(path)

    assert secret.exists
    assert secret.user == owner
    assert secret.group == group
    assert secret.mode == mode


@pytest.mark.parametrize("path", [path for path, _, _, _ in SECRET_FILES] + ["/etc/zrok2/tls/privkey.pem"])
def test_secret_unreadable_by_other_users(host, path):
    if not host.file(path).exists:
        pytest.skip(f"{path} is not used on this host")

    read = host.run("runuser -u nobody -- cat %s", path)

    assert read.rc != 0
    assert read.stdout == ""


def test_ctrl_yml_holds_admin_secret(host):
    config = host.file("/etc/zrok2/ctrl.yml").content_string

    assert "v: 4" in config.splitlines()
    assert "dynamic_proxy_controller:" in config.splitlines()


def test_tls_key_readable_by_caddy_only(host):
    key = host.file("/etc/zrok2/tls/privkey.pem")
    if not key.exists:
        pytest.skip("TLS comes from ACME on this host")

    assert key.user == "root"
    assert key.group == "caddy"
    assert key.mode == 0o640


@pytest.mark.parametrize("unit", ROLE_UNITS)
def test_unit_restarts_always_and_is_sandboxed(host, unit):
    properties = dict(
        line.split("=", 1)
        for line in host.check_output(
            "systemctl show --property=Restart,NoNewPrivileges,ProtectSystem,ProtectHome,PrivateTmp,"
            "User,DynamicUser,CapabilityBoundingSet %s.service", unit
        ).splitlines()
    )

    assert properties["Restart"] == "always"
    assert properties["NoNewPrivileges"] == "yes"
    assert properties["ProtectSystem"] == "strict"
    assert properties["ProtectHome"] == "yes"
    assert properties["PrivateTmp"] == "yes"
    assert properties["User"] != "root"
    assert properties["User"] or properties["DynamicUser"] == "yes"
    assert properties["CapabilityBoundingSet"] == ""


def test_unit_processes_run_unprivileged(host):
    for unit in ROLE_UNITS:
        pid = host.check_output("systemctl show --property=MainPID --value %s.service", unit)
        user = host.check_output("ps -o user= -p %s", pid)

        assert pid != "0", f"{unit} has no main process"
        assert user != "root", f"{unit} runs as root"


def test_controller_api_answers(host, setting):
    port = setting("zrok_frontend_controller_port", 18080)

    answer = fetch(host, f"http://127.0.0.1:{port}/api/v2/versions")

    assert answer["status"] == 200
    assert "controllerVersion" in json.loads(answer["body"])


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_healthz_answers_on_bare_ip(host, setting, scheme):
    address = host.ansible.get_variables().get("ansible_host", "127.0.0.1")
    port = setting(f"zrok_frontend_{scheme}_port", 80 if scheme == "http" else 443)

    answer = fetch(host, f"{scheme}://{address}:{port}/healthz")
    document = json.loads(answer["body"])

    assert answer["status"] == 200
    assert document["status"] == "ok"
    assert document["controller"]["up"] is True
    assert document["frontend"]["up"] is True


def test_healthz_answers_on_share_host(host, setting):
    domain = host.ansible.get_variables()["zrok_share_domain"]
    port = setting("zrok_frontend_https_port", 443)

    answer = fetch(host, f"https://127.0.0.1:{port}/healthz", f"no-such-share.{domain}")

    assert answer["status"] == 200
    assert json.loads(answer["body"])["status"] == "ok"


def test_api_host_reaches_controller(host, setting):
    endpoint = host.ansible.get_variables()["zrok_api_endpoint"]
    api_host = endpoint.split("://", 1)[1].split("/", 1)[0].split(":", 1)[0]
    port = setting("zrok_frontend_https_port", 443)

    answer = fetch(host, f"https://127.0.0.1:{port}/api/v2/versions", api_host)

    assert answer["status"] == 200
    assert "controllerVersion" in json.loads(answer["body"])
