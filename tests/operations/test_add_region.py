"""Adding a region, as docs/operations/add-region.md describes it: a new Pulumi stack (run under
Pulumi's mocks), the inventory command, and a running control server that takes the new frontend."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.controlserver.conftest import REPO, ServerProcess, wait_until
from tests.controlserver.fakezrok import FakeZrok
from tests.infra.infra_mocks import DATA, base_config, run_program

# Portland, Oregon: nearest to Hetzner's Hillsboro location, far from the example stacks' regions.
NEAR_PORTLAND = {"latitude": 45.5, "longitude": -122.7}
EXISTING_STACKS = ("eu-central", "us-east")


def run_inventory_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infra.inventory", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def point_frontend_at(inventory_dir: Path, secrets: dict, name: str, fake: FakeZrok, secret: str) -> None:
    """Send a frontend's admin API and health probes to a fake zrok controller on loopback, with
    host_vars beside the generated files, as an operator would override a generated value."""
    host_vars = inventory_dir / "host_vars"
    host_vars.mkdir(exist_ok=True)
    (host_vars / f"{name}.yml").write_text(yaml.safe_dump({
        "zrok_api_endpoint": f"{fake.url}/{name}",
        "fleet_health_url": f"{fake.url}/{name}/healthz",
    }))
    secrets[name] = secret


def write_secrets(path: Path, secrets: dict) -> None:
    path.write_text(yaml.safe_dump({"zrok_admin_secrets": secrets}))
    path.chmod(0o600)


@pytest.fixture
def fake_zrok():
    with FakeZrok("region-admin-secret-7f3a9c21d4e5b608") as fake:
        yield fake


def test_added_region_takes_printers(tmp_path, fake_zrok):
    inventory_dir = tmp_path / "inventory"
    generated = inventory_dir / "generated"
    secrets_file = tmp_path / "secrets.yml"
    secrets: dict[str, str] = {}
    outputs = [f"{stack}={DATA / 'outputs' / f'{stack}.json'}" for stack in EXISTING_STACKS]
    first = run_inventory_command(*[arg for item in outputs for arg in ("--outputs", item)],
                                  "--output-dir", str(generated))
    assert first.returncode == 0, first.stderr
    for name in ("eu-central-1", "eu-central-2", "us-east-1", "us-east-2"):
        point_frontend_at(inventory_dir, secrets, name, fake_zrok, fake_zrok.admin_secret)
    write_secrets(secrets_file, secrets)

    files = {"inventory": inventory_dir, "secrets": secrets_file, "database": tmp_path / "control.db",
             "database_url": f"sqlite:///{tmp_path / 'control.db'}",
             "tmp": tmp_path}
    server = ServerProcess(files, env={"FLEET_PRINTER_PROBE_INTERVAL_S": "3600"}).start()
    try:
        api = server.client()
        token = api.enrollment_token()
        before = api.register(token, "printer-0001", **NEAR_PORTLAND)
        assert before.status_code == 200, before.text
        assert before.json()["assignment"]["frontend"].startswith("us-east-")

        # The new stack, under Pulumi's mocks, and its inventory file.
        config = base_config(region="us-west", location="hil", serverType="cpx21",
                             domain="us-west.fleet.example.com", sshKeyName="printer-fleet-eu-central-admin")
        exports, _ = run_program("us-west", config)
        outputs_file = tmp_path / "us-west.json"
        outputs_file.write_text(json.dumps(exports))
        point_frontend_at(inventory_dir, secrets, "us-west-1", fake_zrok, fake_zrok.admin_secret)
        write_secrets(secrets_file, secrets)
        added = run_inventory_command("--outputs", str(outputs_file), "--output-dir", str(generated))
        assert added.returncode == 0, added.stderr
        assert (generated / "us-west.yml").is_file()
        server.process.send_signal(signal.SIGHUP)

        wait_until(lambda: "us-west-1" in api.frontends(), "us-west-1 in the control server's frontends", server)
        frontend = api.frontends()["us-west-1"]
        assert frontend["region"] == "us-west"
        assert frontend["location"] == "hil"
        assert frontend["zrok_admin_secret"]
        after = api.register(token, "printer-0002", **NEAR_PORTLAND)
        assert after.status_code == 200, after.text
        assert after.json()["assignment"]["frontend"] == "us-west-1"
        assert after.json()["assignment"]["public_url"].endswith(".us-west-1.us-west.fleet.example.com")
        # Printers already placed stay where they are.
        again = api.register(before.json()["printer_token"], "printer-0001")
        assert again.json()["assignment"]["frontend"] == before.json()["assignment"]["frontend"]
    finally:
        server.stop()


def test_region_name_reused_rejected(tmp_path):
    generated = tmp_path / "generated"
    first = run_inventory_command("--outputs", f"eu-central={DATA / 'outputs' / 'eu-central.json'}",
                                  "--output-dir", str(generated))
    assert first.returncode == 0, first.stderr
    config = base_config(region="eu-central", location="nbg1", domain="eu-central.fleet.example.com")
    exports, _ = run_program("europe", config)
    outputs_file = tmp_path / "europe.json"
    outputs_file.write_text(json.dumps(exports))

    result = run_inventory_command("--outputs", str(outputs_file), "--output-dir", str(generated))

    assert result.returncode != 0
    assert "frontend eu-central-1 occurs in stack" in result.stderr
    assert sorted(p.name for p in generated.iterdir()) == ["eu-central.yml"]
