"""Fixtures that run a whole stand-in zrok instance on loopback high ports.

The `instance` fixture sets the instance up in the order the frontend role
uses on a real host. First come the OpenZiti controller, edge init and
login, and the edge router. Then `zrok2 admin bootstrap`, the
dynamicProxyController identity, the dynamic frontend, the namespace and its
mapping, and finally the zrok controller and the frontend. Every process runs from this repository with a temporary HOME
and is stopped at teardown.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
    # The stand-in is imported as `tests.zrok_standin`, which needs the repository root on sys.path.
    sys.path.insert(0, REPO)
ADMIN_SECRET = "admin-secret-for-loopback-tests"
ZITI_PASSWORD = "ziti-admin-password"
DOMAIN = "lab-test.fleet.test"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port, process=None, timeout=30):
    """Block until 127.0.0.1:`port` accepts connections; fail early if `process` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process {process.args} exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def wait_for_line(path, text, process=None, timeout=30):
    """Block until the log file at `path` contains `text`; return the file's content."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = open(path, encoding="utf-8", errors="replace").read() if os.path.exists(path) else ""
        if text in content:
            return content
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}; log:\n{content}")
        time.sleep(0.1)
    raise RuntimeError(f"'{text}' did not appear in {path}")


class Processes:
    """Background processes started by a test, stopped (and reaped) at teardown."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.running = []

    def start(self, name, args, env):
        log_path = os.path.join(self.workdir, f"{name}.log")
        log = open(log_path, "ab")
        process = subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        process.log_path = log_path
        self.running.append(process)
        return process

    def stop(self, process, sig=signal.SIGTERM):
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop_all(self):
        for process in reversed(self.running):
            self.stop(process)


def base_env(home, **extra):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,
        "PYTHONPATH": REPO,
        "DL_USE_JSON": "true",
    }
    env.update(extra)
    return env


def command(tool):
    return [sys.executable, "-m", "tests.zrok_standin", tool]


class Instance:
    """A running stand-in instance and helpers to drive its CLIs."""

    def __init__(self, workdir, processes):
        self.workdir = workdir
        self.processes = processes
        self.api_port = free_port()
        self.router_port = free_port()
        self.frontend_port = free_port()
        self.ziti_port = free_port()
        self.api_endpoint = f"http://127.0.0.1:{self.api_port}"
        self.router_address = f"127.0.0.1:{self.router_port}"
        self.admin_home = self.home("admin")
        self.controller_home = self.home("controller")

    def home(self, name):
        path = os.path.join(self.workdir, "homes", name)
        os.makedirs(path, exist_ok=True)
        return path

    def env(self, home, **extra):
        return base_env(home, ZROK2_STANDIN_ROUTER_ADDRESS=self.router_address, **extra)

    def run(self, tool, home, *args, check=True, **extra_env):
        result = subprocess.run(
            command(tool) + list(args), cwd=REPO, env=self.env(home, **extra_env), capture_output=True, text=True, timeout=120
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)} failed with {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def zrok2(self, home, *args, check=True, **extra_env):
        return self.run("zrok2", home, *args, check=check, **extra_env)

    def admin(self, *args, check=True):
        return self.zrok2(self.admin_home, *args, check=check, ZROK2_API_ENDPOINT=self.api_endpoint, ZROK2_ADMIN_TOKEN=ADMIN_SECRET)

    def ziti(self, *args, check=True):
        return self.run("ziti", self.admin_home, *args, check=check)

    def write(self, name, text):
        path = os.path.join(self.workdir, name)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        return path

    def start_controller(self):
        self.controller = self.processes.start(
            "zrok-controller", command("zrok2") + ["controller", self.ctrl_yml], self.env(self.controller_home)
        )
        wait_for_port(self.api_port, self.controller)

    def start_router(self):
        self.router = self.processes.start("ziti-router", command("ziti") + ["router", "run", self.router_yml], self.env(self.admin_home))
        wait_for_port(self.router_port, self.router)

    def restart_controller(self):
        self.processes.stop(self.controller)
        self.start_controller()

    def setup(self):
        ziti_home = os.path.join(self.workdir, "ziti")
        os.makedirs(ziti_home, exist_ok=True)
        ziti_env = {"ZITI_HOME": ziti_home, "ZITI_CTRL_ADVERTISED_PORT": str(self.ziti_port), "ZITI_ROUTER_PORT": str(self.router_port)}
        ziti_ctrl_yml = os.path.join(ziti_home, "ctrl.yml")
        router_yml = os.path.join(ziti_home, "router.yml")
        self.run("ziti", self.admin_home, "create", "config", "controller", "-o", ziti_ctrl_yml, **ziti_env)
        self.run("ziti", self.admin_home, "create", "config", "router", "edge", "--routerName", "router-1", "-o", router_yml, **ziti_env)
        self.ziti("controller", "edge", "init", ziti_ctrl_yml, "-u", "admin", "-p", ZITI_PASSWORD)
        self.ziti_controller = self.processes.start("ziti-controller", command("ziti") + ["controller", "run", ziti_ctrl_yml], self.env(self.admin_home))
        wait_for_port(self.ziti_port, self.ziti_controller)
        self.ziti("edge", "login", f"127.0.0.1:{self.ziti_port}", "-u", "admin", "-p", ZITI_PASSWORD, "-y")
        self.ziti("edge", "create", "edge-router-policy", "default", "--edge-router-roles", "#all", "--identity-roles", "#all")
        self.ziti("edge", "create", "service-edge-router-policy", "default", "--edge-router-roles", "#all", "--service-roles", "#all")
        jwt = os.path.join(ziti_home, "router-1.jwt")
        self.ziti("edge", "create", "edge-router", "router-1", "-o", jwt, "-t")
        self.ziti("router", "enroll", router_yml, "--jwt", jwt)
        self.router_yml = router_yml
        self.start_router()

        ctrl = f"""# written like the frontend role's ctrl.yml template
v: 4
admin:
  secrets:
    - {ADMIN_SECRET}
endpoint:
  host: 127.0.0.1
  port: {self.api_port}
store:
  path: {self.workdir}/zrok.db
  type: sqlite3
ziti:
  api_endpoint: "https://127.0.0.1:{self.ziti_port}"
  username: admin
  password: "{ZITI_PASSWORD}"
"""
        self.ctrl_yml = self.write("ctrl.yml", ctrl)
        self.admin("admin", "bootstrap", self.ctrl_yml)
        self.start_controller()

        listing = json.loads(self.ziti("edge", "list", "identities", 'name="public"', "--output-json").stdout)
        public_zid = listing["data"][0]["id"]
        created = self.admin("admin", "create", "frontend", "--dynamic", "--", public_zid, "public")
        self.frontend_token = created.stdout.split("frontend '")[1].split("'")[0]
        self.admin("admin", "create", "identity", "dynamicProxyController")
        identities = os.path.join(self.controller_home, ".zrok2", "identities")
        os.makedirs(identities, exist_ok=True)
        shutil.copy(os.path.join(self.admin_home, ".zrok2", "identities", "dynamicProxyController.json"), identities)
        self.admin("admin", "create", "namespace", "--token", "public", "--open", DOMAIN)
        self.admin("admin", "create", "namespace-frontend", "public", self.frontend_token, "--default")

        with open(self.ctrl_yml, "a", encoding="utf-8") as handle:
            handle.write(
                f"""dynamic_proxy_controller:
  identity_path: {identities}/dynamicProxyController.json
  service_name: dynamicProxyController
  amqp_publisher:
    url: amqp://guest:guest@127.0.0.1:5672
    exchange_name: dynamicProxy
"""
            )
        self.restart_controller()
        wait_for_line(self.router.log_path, "bound service 'dynamicProxyController'", self.router)

        frontend = f"""v: 1
frontend_token: {self.frontend_token}
identity: public
bind_address: 127.0.0.1:{self.frontend_port}
amqp_subscriber:
  url: amqp://guest:guest@127.0.0.1:5672
  exchange_name: dynamicProxy
controller:
  identity_path: {self.admin_home}/.zrok2/identities/public.json
  service_name: dynamicProxyController
"""
        self.frontend_yml = self.write("frontend.yml", frontend)
        self.frontend = self.processes.start(
            "frontend", command("zrok2") + ["access", "dynamicProxy", self.frontend_yml], self.env(self.admin_home)
        )
        wait_for_port(self.frontend_port, self.frontend)

    def new_account(self, email):
        return self.admin("admin", "create", "account", email, "a-password").stdout.strip()

    def enabled_home(self, name):
        """Return a printer HOME enabled against this instance with a new account."""
        home = self.home(name)
        token = self.new_account(f"{name}@fleet.test")
        self.zrok2(home, "config", "set", "apiEndpoint", self.api_endpoint)
        self.zrok2(home, "enable", "--headless", "-d", f"printer {name}", token)
        return home

    def start_share(self, home, name, target, *extra):
        process = self.processes.start(
            f"share-{name}-{time.monotonic_ns()}",
            command("zrok2") + ["share", "public", target, "-n", f"public:{name}", "--headless", *extra],
            self.env(home),
        )
        wait_for_line(process.log_path, "access your zrok share", process)
        return process

    def shares(self, home):
        return json.loads(self.zrok2(home, "list", "shares", "--json").stdout)["shares"]


@pytest.fixture(scope="session")
def instance():
    workdir = tempfile.mkdtemp(prefix="zrok-standin-")
    processes = Processes(workdir)
    running = Instance(workdir, processes)
    try:
        running.setup()
        yield running
    finally:
        processes.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def processes(tmp_path):
    started = Processes(str(tmp_path))
    yield started
    started.stop_all()
