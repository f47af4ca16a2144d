"""The first region's inventory and vault layout, as docs/operations/first-region.md describes it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.controlserver.conftest import ADMIN_TOKEN, REPO, ServerProcess, free_port
from tests.infra.infra_mocks import DATA
from tests.operations.conftest import run_controlserver

BIN = Path(sys.executable).parent


def generate_inventory(inventory_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "infra.inventory", "--outputs", f"eu-central={DATA / 'outputs' / 'eu-central.json'}",
         "--output-dir", str(inventory_dir / "generated")],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def encrypt_vault(path: Path, content: dict, password_file: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(content))
    result = subprocess.run([str(BIN / "ansible-vault"), "encrypt", "--vault-password-file", str(password_file), str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def serve_command(tmp_path: Path, inventory_dir: Path) -> subprocess.CompletedProcess:
    """Run `serve` to its inventory check; an invalid inventory stops it before it listens."""
    return run_controlserver(
        "serve", "--inventory", str(inventory_dir), "--database", f"sqlite:///{tmp_path / 'control.db'}",
        "--listen", f"127.0.0.1:{free_port()}", "--secrets-file", str(tmp_path / "secrets.yml"),
        env={"FLEET_ADMIN_TOKEN": ADMIN_TOKEN, "FLEET_MONITOR_ENABLED": "false"})


def test_vault_inside_inventory_rejected(tmp_path):
    inventory_dir = tmp_path / "inventory"
    generate_inventory(inventory_dir)
    password_file = tmp_path / "vault-password"
    password_file.write_text("correct horse battery staple")
    secret = "vault-admin-token-51d0c9e8f7a6b5c4"
    encrypt_vault(inventory_dir / "group_vars" / "all" / "vault.yml", {"fleet_admin_token": secret}, password_file)

    result = serve_command(tmp_path, inventory_dir)

    assert result.returncode == 2
    assert "encrypted with Ansible Vault" in result.stderr
    assert "move the vault file out of the inventory directory" in result.stderr
    assert "Traceback" not in result.stderr
    assert secret not in result.stderr


def test_vault_outside_inventory_accepted(tmp_path):
    inventory_dir = tmp_path / "inventory"
    generate_inventory(inventory_dir)
    password_file = tmp_path / "vault-password"
    password_file.write_text("correct horse battery staple")
    encrypt_vault(tmp_path / "secrets" / "vault.yml", {"fleet_admin_token": "x" * 32}, password_file)
    files = {"inventory": inventory_dir, "secrets": tmp_path / "secrets.yml", "database": tmp_path / "control.db",
             "database_url": f"sqlite:///{tmp_path / 'control.db'}",
             "tmp": tmp_path}

    # The monitor stays off: the generated frontends have documentation addresses.
    server = ServerProcess(files, env={"FLEET_MONITOR_ENABLED": "false"}).start()
    try:
        frontends = server.client().frontends()
    finally:
        server.stop()

    assert sorted(frontends) == ["eu-central-1", "eu-central-2"]


def test_frontend_tls_files_outside_inventory(tmp_path):
    group_vars = yaml.safe_load((REPO / "inventory" / "group_vars" / "zrok_frontends.yml").read_text())

    for key in ("zrok_frontend_tls_certificate_src", "zrok_frontend_tls_private_key_src"):
        assert group_vars[key].startswith("{{ playbook_dir }}/../tls/"), key
