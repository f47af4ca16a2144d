"""Static and rendering checks of roles/zrok_frontend and playbooks/frontends.yml.

Nothing here touches a host: ansible-lint and --syntax-check read files, the argument-spec checks
fail before the first task, and the templates render into a temporary directory. The Caddy test
runs the rendered Caddyfile on 127.0.0.1 in front of local echo servers.
"""

import configparser
import http.client
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "zrok_frontend"
RENDER_PLAYBOOK = Path(__file__).resolve().parent / "zrok_frontend" / "render.yml"
VENV_BIN = Path(sys.executable).parent

ADMIN_SECRET = "s3cr3t-admin-value-0123456789"
ZITI_PASSWORD = "ziti-password-abcdef0123"
SHARE_DOMAIN = "lab-eu.fleet.test"

UNITS = ["ziti-controller", "ziti-router", "zrok2-controller", "zrok2-frontend", "zrok2-health"]


def ansible_env():
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env["ANSIBLE_ROLES_PATH"] = str(REPO / "roles")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_playbook(playbook, *args, inventory="localhost,"):
    command = [str(VENV_BIN / "ansible-playbook"), "-i", inventory, str(playbook), *args]
    return subprocess.run(command, cwd=REPO, env=ansible_env(), capture_output=True, text=True, timeout=300)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def render(tmp_path, **overrides):
    """Render every template of the role into tmp_path with the lab-eu values plus overrides."""
    variables = {
        "zrok_share_domain": SHARE_DOMAIN,
        "zrok_api_endpoint": f"https://api.{SHARE_DOMAIN}",
        "fleet_zrok_admin_secrets": {"localhost": ADMIN_SECRET},
        "__zrok_frontend_ziti_password": ZITI_PASSWORD,
        "__zrok_frontend_frontend_token": "feTok123",
        "render_dir": str(tmp_path),
        "ansible_python_interpreter": sys.executable,
        "ansible_host": "10.213.47.11",
    }
    variables.update(overrides)
    variables_file = tmp_path / "variables.json"
    variables_file.write_text(json.dumps(variables))

    result = run_playbook(RENDER_PLAYBOOK, "-e", f"@{variables_file}")
    assert result.returncode == 0, result.stdout + result.stderr

    for name, text in json.loads((tmp_path / "rendered.json").read_text()).items():
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    return render(tmp_path_factory.mktemp("rendered"))


# --- lint and syntax -------------------------------------------------------------------------------


def test_ansible_lint_production_profile():
    result = subprocess.run(
        [str(VENV_BIN / "ansible-lint"), "--profile", "production", "--offline",
         "roles/zrok_frontend", "playbooks/frontends.yml", "playbooks/control_server.yml"],
        cwd=REPO, env=ansible_env(), capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("playbook", ["frontends.yml", "control_server.yml"])
def test_playbook_syntax_check(playbook):
    result = run_playbook(REPO / "playbooks" / playbook, "--syntax-check")
    assert result.returncode == 0, result.stdout + result.stderr


# --- argument specs --------------------------------------------------------------------------------


def test_argument_specs_document_every_default():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    options = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]

    assert sorted(set(defaults) - set(options)) == []
    assert sorted(set(options) - set(defaults)) == []
    for name, spec in options.items():
        assert spec.get("description"), f"{name} has no description"
        assert spec.get("type"), f"{name} has no type"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("zrok_frontend_install_method", "ftp", "value of zrok_frontend_install_method must be one of: repository, archive, local, got: ftp"),
        ("zrok_frontend_tls_mode", "selfsigned", "value of zrok_frontend_tls_mode must be one of: certificate, acme_dns01, got: selfsigned"),
        ("zrok_frontend_store_type", "mysql", "value of zrok_frontend_store_type must be one of: sqlite3, postgres, got: mysql"),
        ("zrok_frontend_controller_port", "eighty", "argument 'zrok_frontend_controller_port' is of type str and we were unable to convert to int"),
    ],
)
def test_argument_specs_reject_invalid_value(tmp_path, variable, value, expected):
    playbook = tmp_path / "validate.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Validate zrok_frontend arguments",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "tasks": [{"name": "Run the role", "ansible.builtin.include_role": {"name": "zrok_frontend"}}],
    }]))
    variables = {
        "zrok_share_domain": SHARE_DOMAIN,
        "zrok_api_endpoint": f"https://api.{SHARE_DOMAIN}",
        "fleet_zrok_admin_secrets": {"localhost": ADMIN_SECRET},
        "ansible_python_interpreter": sys.executable,
        variable: value,
    }
    variables_file = tmp_path / "variables.json"
    variables_file.write_text(json.dumps(variables))

    result = run_playbook(playbook, "-e", f"@{variables_file}")

    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Validating arguments against arg spec" in output
    assert expected in output
    assert ADMIN_SECRET not in output


# --- templates -------------------------------------------------------------------------------------


def test_ctrl_yml_carries_version_and_secret(rendered):
    config = yaml.safe_load((rendered / "ctrl.yml").read_text())

    assert config["v"] == 4
    assert config["admin"]["secrets"] == [ADMIN_SECRET]
    assert config["endpoint"] == {"host": "127.0.0.1", "port": 18080}
    assert config["ziti"] == {"api_endpoint": "https://127.0.0.1:1280", "username": "admin", "password": ZITI_PASSWORD}
    assert config["store"] == {"type": "sqlite3", "path": "/var/lib/zrok2-controller/zrok.db"}
    assert "dynamic_proxy_controller" not in config


def test_ctrl_yml_adds_dynamic_proxy_controller(tmp_path):
    rendered = render(tmp_path, __zrok_frontend_dpc_identity_exists=True)

    config = yaml.safe_load((rendered / "ctrl.yml").read_text())

    assert config["dynamic_proxy_controller"] == {
        "identity_path": "/var/lib/zrok2-controller/.zrok2/identities/dynamicProxyController.json",
        "service_name": "dynamicProxyController",
        "amqp_publisher": {"url": "amqp://guest:guest@127.0.0.1:5672", "exchange_name": "dynamicProxy"},
    }


def test_ctrl_yml_quotes_awkward_secret(tmp_path):
    secret = "a'b\"c: #d {e} 0123456789"
    rendered = render(tmp_path, fleet_zrok_admin_secrets={"localhost": secret})

    config = yaml.safe_load((rendered / "ctrl.yml").read_text())

    assert config["admin"]["secrets"] == [secret]


def test_frontend_yml_routes_share_domain(rendered):
    config = yaml.safe_load((rendered / "frontend.yml").read_text())

    assert config["v"] == 1
    assert config["frontend_token"] == "feTok123"
    assert config["identity"] == "public"
    assert config["bind_address"] == "127.0.0.1:8080"
    assert config["host_match"] == SHARE_DOMAIN
    assert config["amqp_subscriber"] == {"url": "amqp://guest:guest@127.0.0.1:5672", "exchange_name": "dynamicProxy"}
    assert config["controller"] == {
        "identity_path": "/var/lib/zrok2-frontend/.zrok2/identities/public.json",
        "service_name": "dynamicProxyController",
    }
    assert config["interstitial"] == {"enabled": False}


def test_ziti_configs_advertise_share_domain(rendered):
    controller = yaml.safe_load((rendered / "ziti-controller.yml").read_text())
    router = yaml.safe_load((rendered / "ziti-router.yml").read_text())

    assert controller["v"] == 3
    assert controller["ctrl"]["options"]["advertiseAddress"] == f"tls:ziti.{SHARE_DOMAIN}:1280"
    assert controller["web"][0]["bindPoints"][0]["address"] == f"ziti.{SHARE_DOMAIN}:1280"
    assert router["v"] == 3
    assert router["ctrl"]["endpoint"] == "tls:127.0.0.1:1280"
    assert router["listeners"][0]["options"]["advertise"] == f"ziti.{SHARE_DOMAIN}:3022"
    assert "10.213.47.11" in router["edge"]["csr"]["sans"]["ip"]


def test_rabbitmq_binds_localhost(rendered):
    environment = (rendered / "rabbitmq-env.conf").read_text()
    epmd = (rendered / "epmd-socket-override.conf").read_text()

    assert "NODE_IP_ADDRESS=127.0.0.1" in environment.splitlines()
    assert "inet_dist_use_interface {127,0,0,1}" in environment
    assert "ListenStream=127.0.0.1:4369" in epmd.splitlines()


@pytest.mark.parametrize("unit", UNITS)
def test_unit_restarts_and_is_sandboxed(rendered, unit):
    text = (rendered / f"{unit}.service").read_text()
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string(text)
    service = parser["Service"]

    assert text.startswith("#\n# Ansible managed")
    assert service["Restart"] == "always"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["ProtectHome"] == "yes"
    assert service["PrivateTmp"] == "yes"
    assert service["CapabilityBoundingSet"] == ""
    assert service.get("User") != "root"
    assert service.get("User") or service.get("DynamicUser") == "yes"
    assert parser["Install"]["WantedBy"] == "multi-user.target"


def test_units_run_pinned_binaries(rendered):
    controller = (rendered / "zrok2-controller.service").read_text()
    frontend = (rendered / "zrok2-frontend.service").read_text()

    assert "ExecStart=/usr/bin/zrok2 controller /etc/zrok2/ctrl.yml" in controller
    assert "ExecStart=/usr/bin/zrok2 access dynamicProxy /etc/zrok2/frontend.yml" in frontend


def test_units_use_install_dir_for_archives(tmp_path):
    rendered = render(tmp_path, zrok_frontend_install_method="archive")

    controller = (rendered / "ziti-controller.service").read_text()

    assert "ExecStart=/usr/local/bin/ziti controller run /var/lib/ziti-controller/config.yml" in controller


# --- Caddy in front of echo servers ----------------------------------------------------------------


class EchoHandler(http.server.BaseHTTPRequestHandler):
    """Return what the upstream received: name, Host, path, headers and body length."""

    def _read_body(self):
        """Read the whole request body, chunked or not, and return its length."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            length = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return length
                length += len(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        remaining = length
        while remaining:
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                break
            remaining -= len(chunk)
        return length

    def _answer(self):
        try:
            length = self._read_body()
        except ValueError:
            return  # the proxy cut the body off
        body = json.dumps({
            "upstream": self.server.name,
            "host": self.headers.get("Host"),
            "path": self.path,
            "x_real_ip": self.headers.get_all("X-Real-Ip"),
            "x_forwarded_for": self.headers.get_all("X-Forwarded-For"),
            "forwarded": self.headers.get_all("Forwarded"),
            "body_length": length,
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, format, *args):  # noqa: A002 (signature fixed by the base class)
        pass


def start_echo(name):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    server.name = name
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def make_certificate(directory):
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(directory / "privkey.pem"), "-out", str(directory / "fullchain.pem"),
         "-subj", f"/CN=*.{SHARE_DOMAIN}", "-addext", f"subjectAltName=DNS:*.{SHARE_DOMAIN},DNS:{SHARE_DOMAIN}"],
        check=True, capture_output=True,
    )


@pytest.fixture(scope="module")
def caddy(tmp_path_factory):
    """Run the rendered Caddyfile on 127.0.0.1 with echo servers as controller, frontend and health.

    The upload limit is 1 MiB here, so the limit tests send small bodies.
    """
    yield from run_caddy(tmp_path_factory, zrok_frontend_max_upload_size_mib=1)


@pytest.fixture(scope="module")
def caddy_default_limit(tmp_path_factory):
    """The same with the role's default upload limit, 1024 MiB, Moonraker's default max_upload_size."""
    yield from run_caddy(tmp_path_factory)


def run_caddy(tmp_path_factory, **variables):
    if shutil.which("caddy") is None or shutil.which("openssl") is None:
        pytest.skip("needs the caddy and openssl executables (apt-get install caddy openssl)")

    directory = tmp_path_factory.mktemp("caddy")
    make_certificate(directory)
    upstreams = {name: start_echo(name) for name in ("controller", "frontend", "health")}
    ports = {"http": free_port(), "https": free_port(), "admin": free_port()}
    render(
        directory,
        _zrok_frontend_tls_dir=str(directory),
        zrok_frontend_http_port=ports["http"],
        zrok_frontend_https_port=ports["https"],
        zrok_frontend_proxy_bind_addresses=["127.0.0.1"],
        zrok_frontend_controller_port=upstreams["controller"].server_address[1],
        zrok_frontend_frontend_port=upstreams["frontend"].server_address[1],
        zrok_frontend_health_port=upstreams["health"].server_address[1],
        **variables,
    )
    caddyfile = directory / "Caddyfile"
    # The admin API of this test instance must not collide with any other Caddy on the machine.
    caddyfile.write_text(caddyfile.read_text().replace("{\n", f"{{\n\tadmin 127.0.0.1:{ports['admin']}\n", 1))

    environment = dict(os.environ, HOME=str(directory), XDG_DATA_HOME=str(directory / "data"),
                       XDG_CONFIG_HOME=str(directory / "config"))
    process = subprocess.Popen(
        ["caddy", "run", "--adapter", "caddyfile", "--config", str(caddyfile)],
        env=environment, stdout=subprocess.DEVNULL, stderr=(directory / "caddy.log").open("w"),
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", ports["https"]), timeout=0.2).close()
            socket.create_connection(("127.0.0.1", ports["http"]), timeout=0.2).close()
            break
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.1)
    if process.poll() is not None:
        pytest.fail("caddy exited: " + (directory / "caddy.log").read_text())

    yield ports

    process.terminate()
    process.wait(timeout=10)
    for server in upstreams.values():
        server.shutdown()
        server.server_close()


def loopback_connection(address, *args, **kwargs):
    """Connect to 127.0.0.1 whatever name the connection was made for."""
    return socket.create_connection(("127.0.0.1", address[1]), *args, **kwargs)


def request(ports, scheme, host, path="/", headers=None, body=None, sni=True):
    """Send one request to the Caddy under test and return (status, headers, body)."""
    if scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        # With sni, the TLS handshake names the host as a browser would; an IP address sends no SNI.
        connection = http.client.HTTPSConnection(host if sni else "127.0.0.1", ports["https"],
                                                 timeout=10, context=context)
        connection._create_connection = loopback_connection
    else:
        connection = http.client.HTTPConnection("127.0.0.1", ports["http"], timeout=10)
    try:
        connection.request("POST" if body is not None else "GET", path, body=body,
                           headers={"Host": host, **(headers or {})})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_caddy_routes_api_host_to_controller(caddy):
    status, _, body = request(caddy, "https", f"api.{SHARE_DOMAIN}", "/api/v2/versions")

    assert status == 200
    assert json.loads(body)["upstream"] == "controller"
    assert json.loads(body)["path"] == "/api/v2/versions"


def test_caddy_passes_share_host_to_frontend(caddy):
    status, _, body = request(caddy, "https", f"p-printer-01.{SHARE_DOMAIN}", "/server/info")
    echoed = json.loads(body)

    assert status == 200
    assert echoed["upstream"] == "frontend"
    assert echoed["host"] == f"p-printer-01.{SHARE_DOMAIN}"


def test_caddy_replaces_client_headers_with_real_address(caddy):
    spoofed = {"X-Real-Ip": "203.0.113.9", "X-Forwarded-For": "203.0.113.9, 198.51.100.7",
               "Forwarded": "for=203.0.113.9"}

    status, _, body = request(caddy, "https", f"p-printer-01.{SHARE_DOMAIN}", "/", headers=spoofed)
    echoed = json.loads(body)

    assert status == 200
    assert echoed["x_real_ip"] == ["127.0.0.1"]
    assert echoed["x_forwarded_for"] == ["127.0.0.1"]
    assert echoed["forwarded"] is None


@pytest.mark.parametrize(
    ("scheme", "host", "sni"),
    [
        ("http", "10.213.47.11", False),
        ("https", "10.213.47.11", False),
        ("http", f"p-printer-01.{SHARE_DOMAIN}", False),
        ("https", f"api.{SHARE_DOMAIN}", True),
        ("https", "unrelated.example.org", True),
    ],
)
def test_caddy_serves_healthz_on_any_host(caddy, scheme, host, sni):
    status, _, body = request(caddy, scheme, host, "/healthz", sni=sni)

    assert status == 200
    assert json.loads(body)["upstream"] == "health"


def test_caddy_redirects_plain_http(caddy):
    status, headers, _ = request(caddy, "http", f"p-printer-01.{SHARE_DOMAIN}", "/server/info")

    assert status == 308
    assert headers["Location"] == f"https://p-printer-01.{SHARE_DOMAIN}:{caddy['https']}/server/info"


def test_caddy_answers_unknown_host_without_upstream(caddy):
    status, _, body = request(caddy, "https", "10.213.47.11", "/", sni=False)

    assert status == 404
    assert b"use https://<share>." in body


def test_caddy_accepts_body_up_to_limit(caddy):
    status, _, body = request(caddy, "https", f"p-printer-01.{SHARE_DOMAIN}", "/server/files/upload",
                              body=b"x" * (1024 * 1024 - 1024))

    assert status == 200
    assert json.loads(body)["body_length"] == 1024 * 1024 - 1024


def test_caddy_rejects_body_over_limit(caddy):
    status, _, _ = request(caddy, "https", f"p-printer-01.{SHARE_DOMAIN}", "/server/files/upload",
                           body=b"x" * (1024 * 1024 + 1024))

    assert status == 413


def test_caddyfile_default_limit_covers_moonraker(rendered):
    assert "max_size 1024MiB" in (rendered / "Caddyfile").read_text()


def test_caddy_stops_chunked_body_over_limit(caddy):
    chunks = (b"x" * 65536 for _ in range(32))  # 2 MiB without Content-Length
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = http.client.HTTPSConnection(f"p-printer-01.{SHARE_DOMAIN}", caddy["https"], timeout=10, context=context)
    connection._create_connection = loopback_connection
    try:
        connection.request("POST", "/server/files/upload", body=chunks, encode_chunked=True,
                           headers={"Host": f"p-printer-01.{SHARE_DOMAIN}"})
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()

    assert response.status in (413, 502)  # Caddy 2.6 reports an exceeded max_size while proxying as 502
    assert b'"upstream"' not in body


GIB = 1024 * 1024 * 1024


def stream_upload(ports, length: int, declared: bool):
    """POST `length` generated bytes through Caddy; return (status, body). Nothing goes to disk."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = http.client.HTTPSConnection(f"p-printer-01.{SHARE_DOMAIN}", ports["https"], timeout=120,
                                             context=context)
    connection._create_connection = loopback_connection
    block = b"G1 X10 Y10\n" * 6000

    def blocks():
        remaining = length
        while remaining:
            piece = block[:remaining]
            remaining -= len(piece)
            yield piece

    headers = {"Host": f"p-printer-01.{SHARE_DOMAIN}"}
    if declared:
        headers["Content-Length"] = str(length)
    try:
        connection.request("POST", "/server/files/upload", body=blocks(), headers=headers,
                           encode_chunked=not declared)
        response = connection.getresponse()
        return response.status, response.read()
    except (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError):
        # Caddy may respond and close the connection before the whole body was sent.
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_caddy_passes_one_gib_upload(caddy_default_limit):
    status, body = stream_upload(caddy_default_limit, GIB, declared=True)

    assert status == 200
    assert json.loads(body)["body_length"] == GIB


def test_caddy_rejects_upload_over_one_gib(caddy_default_limit):
    status, body = stream_upload(caddy_default_limit, GIB + 1, declared=True)

    assert status == 413
    assert b"request body larger than 1024 MiB" in body


# --- health endpoint -------------------------------------------------------------------------------


@pytest.fixture
def health_service():
    """Start files/zrok2-health against echo servers; yield a function that fetches /healthz."""
    controller = start_echo("controller")
    frontend = start_echo("frontend")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROLE / "files" / "zrok2-health"), "--listen", f"127.0.0.1:{port}",
         "--controller", f"http://127.0.0.1:{controller.server_address[1]}",
         "--frontend", f"http://127.0.0.1:{frontend.server_address[1]}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)

    def fetch(path="/healthz"):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    fetch.controller = controller
    fetch.frontend = frontend
    yield fetch

    process.terminate()
    process.wait(timeout=10)
    for server in (controller, frontend):
        server.shutdown()
        server.server_close()


def test_health_reports_ok_when_both_up(health_service):
    status, body = health_service()
    document = json.loads(body)

    assert status == 200
    assert document["status"] == "ok"
    assert document["controller"]["up"] is True
    assert document["frontend"]["up"] is True


def test_health_reports_controller_down(health_service):
    health_service.controller.shutdown()
    health_service.controller.server_close()

    status, body = health_service()
    document = json.loads(body)

    assert status == 503
    assert document["status"] == "failing"
    assert document["controller"]["up"] is False
    assert document["controller"]["error"].startswith("ConnectionRefusedError")
    assert document["frontend"]["up"] is True


def test_health_reports_frontend_down(health_service):
    health_service.frontend.shutdown()
    health_service.frontend.server_close()

    status, body = health_service()
    document = json.loads(body)

    assert status == 503
    assert document["frontend"]["up"] is False
    assert document["controller"]["up"] is True


def test_health_serves_only_healthz(health_service):
    status, _ = health_service("/")

    assert status == 404
