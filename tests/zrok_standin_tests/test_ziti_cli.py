"""The ziti stand-in accepts the commands a frontend role runs and leaves the files its `creates:` checks expect."""

import json
import os
import subprocess

import pytest

from .conftest import REPO, base_env, command, free_port, wait_for_port


def ziti(home, *args, check=True, **extra_env):
    result = subprocess.run(command("ziti") + list(args), cwd=REPO, env=base_env(home, **extra_env), capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"ziti {' '.join(args)} failed with {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def controller(tmp_path, processes):
    return start_controller(tmp_path, processes, "pw-1")


def start_controller(tmp_path, processes, password):
    """Initialize and run a controller whose admin has `password`, and log in to it."""
    port = free_port()
    state = tmp_path / "ziti-controller"
    (state / "db").mkdir(parents=True)
    config = state / "config.yml"
    config.write_text(
        f"""#
# Ansible managed
#
v: 3
db: {state}/db/ctrl.db
web:
  - name: client-management
    bindPoints:
      - interface: 127.0.0.1:{port}
        address: ziti.lab-test.fleet.test:{port}
    apis:
      - binding: edge-management
        options: {{}}
"""
    )
    home = str(tmp_path / "root")
    os.makedirs(home)
    ziti(home, "controller", "edge", "init", str(config), "--username", "admin", "-p", password)
    process = processes.start("ziti-controller", command("ziti") + ["controller", "run", str(config)], base_env(home))
    wait_for_port(port, process)
    ziti(home, "edge", "login", f"https://127.0.0.1:{port}", "--username", "admin", "--password", password, "--yes")
    return {"home": home, "config": config, "state": state, "process": process, "port": port}


def test_password_starting_with_dash(tmp_path, processes):
    # The role generates the admin password with token_urlsafe, which starts with "-" once in
    # 64 passwords. ziti takes the argument after --password as the value, whatever it starts with.
    controller = start_controller(tmp_path, processes, "-Xq9_pw")

    wrong_login = ziti(controller["home"], "edge", "login", f"https://127.0.0.1:{controller['port']}",
                 "--username", "admin", "--password", "-Xq9_other", "--yes", check=False)
    listed = ziti(controller["home"], "edge", "list", "identities", "--output-json")

    assert wrong_login.returncode != 0
    assert json.loads(listed.stdout)["data"] == []


def test_pki_commands_create_expected_files(tmp_path):
    pki = tmp_path / "pki"
    home = str(tmp_path)
    steps = [
        ("root/certs/root.cert", ["pki", "create", "ca", "--pki-root", str(pki), "--ca-file", "root"]),
        ("intermediate/certs/intermediate.cert", ["pki", "create", "intermediate", "--pki-root", str(pki), "--ca-name", "root", "--intermediate-file", "intermediate"]),
        ("intermediate/keys/server.key", ["pki", "create", "key", "--pki-root", str(pki), "--ca-name", "intermediate", "--key-file", "server"]),
        ("intermediate/certs/server.chain.pem", ["pki", "create", "server", "--pki-root", str(pki), "--ca-name", "intermediate", "--key-file", "server", "--server-file", "server", "--dns", "localhost,ziti.example", "--ip", "127.0.0.1,::1"]),
        ("intermediate/certs/client.chain.pem", ["pki", "create", "client", "--pki-root", str(pki), "--ca-name", "intermediate", "--key-file", "server", "--client-file", "client"]),
    ]

    for created, argv in steps:
        ziti(home, *argv)

        assert (pki / created).exists(), f"'ziti {' '.join(argv[:3])}' did not create {created}"
    assert (pki / "intermediate/keys/intermediate.key").exists()
    assert oct((pki / "intermediate/keys/server.key").stat().st_mode & 0o777) == "0o600"


def test_edge_init_twice_fails(controller):
    again = ziti(controller["home"], "controller", "edge", "init", str(controller["config"]), "--username", "admin", "--password", "x", check=False)

    assert again.returncode == 1
    assert "already initialized" in again.stderr


def test_list_filters_by_name_as_json(controller):
    home = controller["home"]
    ziti(home, "edge", "create", "edge-router-policy", "default", "--edge-router-roles", "#all", "--identity-roles", "#all")
    ziti(home, "edge", "create", "service", "dynamicProxyController")
    ziti(home, "edge", "create", "service-policy", "dynamicProxyController-bind", "Bind", "--identity-roles", "@dynamicProxyController", "--service-roles", "@dynamicProxyController")

    found = json.loads(ziti(home, "edge", "list", "service-policies", 'name="dynamicProxyController-bind"', "--output-json").stdout)
    missing = json.loads(ziti(home, "edge", "list", "service-policies", 'name="dynamicProxyController-dial"', "--output-json").stdout)
    policies = json.loads(ziti(home, "edge", "list", "edge-router-policies", 'name="default"', "--output-json").stdout)

    assert [p["type"] for p in found["data"]] == ["Bind"]
    assert found["data"][0]["identityRoles"] == ["@dynamicProxyController"]
    assert missing["data"] == []
    assert policies["data"][0]["edgeRouterRoles"] == ["#all"]


def test_duplicate_name_rejected(controller):
    home = controller["home"]
    ziti(home, "edge", "create", "service", "svc-1")

    again = ziti(home, "edge", "create", "service", "svc-1", check=False)

    assert again.returncode == 1
    assert "duplicate" in again.stderr


def test_router_enrollment_writes_identity_files(controller, tmp_path):
    home = controller["home"]
    router_home = tmp_path / "ziti-router"
    router_home.mkdir()
    config = router_home / "config.yml"
    config.write_text(
        f"""v: 3
identity:
  cert: {router_home}/lab-1-router.cert
  server_cert: {router_home}/lab-1-router.server.chain.cert
  key: {router_home}/lab-1-router.key
  ca: {router_home}/lab-1-router.cas
listeners:
  - binding: edge
    address: tls:0.0.0.0:3022
"""
    )
    jwt = router_home / "enrollment.jwt"

    ziti(home, "edge", "create", "edge-router", "lab-1-router", "--tunneler-enabled", "--jwt-output-file", str(jwt))
    ziti(home, "router", "enroll", str(config), "--jwt", str(jwt))
    listed = json.loads(ziti(home, "edge", "list", "edge-routers", 'name="lab-1-router"', "--output-json").stdout)
    ziti(home, "edge", "delete", "edge-router", "lab-1-router")
    after = json.loads(ziti(home, "edge", "list", "edge-routers", 'name="lab-1-router"', "--output-json").stdout)

    assert (router_home / "lab-1-router.cert").exists()
    assert (router_home / "lab-1-router.cas").exists()
    assert oct((router_home / "lab-1-router.key").stat().st_mode & 0o777) == "0o600"
    assert len(listed["data"]) == 1
    assert after["data"] == []


def test_commands_need_login(tmp_path):
    result = ziti(str(tmp_path), "edge", "list", "identities", check=False)

    assert result.returncode == 1
    assert "ziti edge login" in result.stderr


def test_login_survives_controller_restart(controller, processes, tmp_path):
    home = controller["home"]
    processes.stop(controller["process"])
    restarted = processes.start("ziti-controller-2", command("ziti") + ["controller", "run", str(controller["config"])], base_env(home))
    wait_for_port(controller["port"], restarted)

    listed = ziti(home, "edge", "list", "identities", "--output-json")

    assert json.loads(listed.stdout)["data"] == []
    assert "ctrl.db" in os.listdir(controller["state"] / "db")
