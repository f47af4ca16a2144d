"""Checks of the lab's generated files and of the Klipper stand-in, without booting the lab."""

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lab import deploy, hosts, inventory, pki

STANDIN = Path(__file__).resolve().parent / "files" / "klipper_standin.py"


@pytest.fixture
def lab_paths(tmp_path, monkeypatch):
    monkeypatch.setattr(inventory, "INVENTORY_DIR", tmp_path / "inventory")
    monkeypatch.setattr(inventory, "INVENTORY_FILE", tmp_path / "inventory" / "hosts.yml")
    monkeypatch.setattr(inventory, "GROUP_VARS_DIR", tmp_path / "inventory" / "group_vars" / "all")
    monkeypatch.setattr(inventory, "SECRETS_FILE", tmp_path / "state" / "secrets.yml")
    return tmp_path


def ansible_inventory(path: Path) -> dict:
    ansible_inventory = Path(sys.executable).with_name("ansible-inventory")
    result = subprocess.run([str(ansible_inventory), "-i", str(path), "--list"],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def test_inventory_lists_every_lab_host(lab_paths):
    path = inventory.write_inventory(Path("/nonexistent/key"), lab_paths / "pki")

    listed = ansible_inventory(path)

    assert sorted(listed["zrok_frontends"]["hosts"]) == ["lab-eu-1", "lab-us-1"]
    assert listed["control_servers"]["hosts"] == ["control-1"]
    assert sorted(listed["printers"]["hosts"]) == [f"printer-0{i}" for i in range(1, 7)]


def test_inventory_frontend_fields(lab_paths):
    path = inventory.write_inventory(Path("/nonexistent/key"), lab_paths / "pki")

    hostvars = ansible_inventory(path)["_meta"]["hostvars"]["lab-us-1"]

    assert hostvars["fleet_provider"] == "lab"
    assert hostvars["fleet_region"] == "lab-us"
    assert hostvars["fleet_location"] == "us-east-1"
    assert hostvars["zrok_api_endpoint"] == "https://api.lab-us.fleet.test"
    assert hostvars["zrok_share_domain"] == "lab-us.fleet.test"
    assert hostvars["ansible_host"] == "10.213.47.12"
    assert hostvars["ansible_user"] == "root"


def test_secrets_file_is_private(lab_paths):
    path = inventory.write_secrets()

    assert path.stat().st_mode & 0o777 == 0o600
    assert set(inventory.read_secrets()["fleet_zrok_admin_secrets"]) == {"lab-eu-1", "lab-us-1"}


def test_secrets_stay_out_of_the_inventory(lab_paths):
    inventory.write_secrets()
    inventory.write_inventory(Path("/nonexistent/key"), lab_paths / "pki")
    secret = inventory.read_secrets()["fleet_admin_token"]

    written = "".join(p.read_text() for p in (lab_paths / "inventory").rglob("*.yml"))

    assert secret not in written


def test_wildcard_certificates_cover_share_names(tmp_path):
    from cryptography import x509

    paths = pki.make_pki(tmp_path)

    cert = x509.load_pem_x509_certificate(paths["lab-eu.fleet.test_cert"].read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert "*.lab-eu.fleet.test" in names
    assert paths["lab-eu.fleet.test_key"].stat().st_mode & 0o777 == 0o600


def test_dns_answers_wildcards_for_share_domains():
    lines = hosts.dnsmasq_config().splitlines()

    assert "address=/lab-eu.fleet.test/10.213.47.11" in lines
    assert "address=/lab-us.fleet.test/10.213.47.12" in lines
    assert "address=/control.fleet.test/10.213.47.5" in lines


async def _klipper_exchange(socket_path: str, requests: list[dict]) -> list[dict]:
    reader, writer = await asyncio.open_unix_connection(socket_path)
    answers = []
    for request in requests:
        writer.write(json.dumps(request).encode() + b"\x03")
        await writer.drain()
        answers.append(json.loads((await reader.readuntil(b"\x03"))[:-1]))
    writer.close()
    return answers


def test_klipper_standin_reports_ready(tmp_path):
    socket_path = str(tmp_path / "klippy.sock")
    process = subprocess.Popen([sys.executable, str(STANDIN), socket_path], stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            if Path(socket_path).exists():
                break
            asyncio.run(asyncio.sleep(0.05))
        info, objects = asyncio.run(_klipper_exchange(socket_path, [
            {"id": 1, "method": "info", "params": {}},
            {"id": 2, "method": "objects/query", "params": {"objects": {"webhooks": None}}},
        ]))
    finally:
        process.terminate()
        process.wait(timeout=10)

    assert info["id"] == 1
    assert info["result"]["state"] == "ready"
    assert objects["result"]["status"]["webhooks"]["state"] == "ready"


def test_failed_playbook_error_names_the_task():
    # CI keeps only the end of the log, so the error itself must name the failed task.
    progress = deploy._ProgressPrinter()
    progress({"event": "runner_on_failed", "event_data": {
        "host": "lab-eu-1", "task": "Initialise the OpenZiti database with the admin user",
        "res": {"msg": "non-zero return code"}}})
    progress({"event": "runner_on_failed", "event_data": {
        "host": "lab-us-1", "task": "Log in to the OpenZiti edge API",
        "res": {"msg": "secret value", "_ansible_no_log": True}}})
    result = deploy.PlaybookResult("frontends.yml", "failed", 2, {}, ["lab-eu-1", "lab-us-1"], progress.failures)

    message = str(deploy.playbook_failed(result))

    assert "frontends.yml failed (failed)" in message
    assert "lab-eu-1: Initialise the OpenZiti database with the admin user: non-zero return code" in message
    assert "lab-us-1: Log in to the OpenZiti edge API: the output is hidden" in message
    assert "secret value" not in message
