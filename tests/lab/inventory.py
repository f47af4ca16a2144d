"""Write the lab inventory (generated format, `fleet_provider: lab`) and the lab secrets."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import jinja2
import yaml

from tests.lab import topology

INVENTORY_DIR = topology.BUILD_DIR / "inventory"
INVENTORY_FILE = INVENTORY_DIR / "hosts.yml"
SECRETS_FILE = topology.STATE_DIR / "secrets.yml"
FRONTEND_CAPACITY = 10

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "files"),
    undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)


def write_secrets() -> Path:
    """Create the lab's secrets once per lab (mode 0600, outside the repository)."""
    if SECRETS_FILE.exists():
        return SECRETS_FILE
    values = {
        "fleet_zrok_admin_secrets": {host.name: secrets.token_hex(24) for host in topology.FRONTENDS},
        "fleet_admin_token": secrets.token_urlsafe(32),
    }
    SECRETS_FILE.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(SECRETS_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        yaml.safe_dump(values, handle)
    return SECRETS_FILE


def read_secrets() -> dict:
    return yaml.safe_load(SECRETS_FILE.read_text())


def update_secrets(**values: str) -> None:
    current = read_secrets()
    current.update(values)
    descriptor = os.open(SECRETS_FILE, os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        yaml.safe_dump(current, handle)


def write_inventory(ssh_key: Path, pki: dict[str, Path], extra_group_vars: dict | None = None) -> Path:
    INVENTORY_DIR.mkdir(parents=True, exist_ok=True)
    INVENTORY_FILE.write_text(_templates.get_template("inventory.yml.j2").render(
        frontends=topology.FRONTENDS, control=topology.CONTROL, printers=topology.PRINTERS,
        client=topology.CLIENT, printer_locations=topology.PRINTER_LOCATIONS,
        frontend_capacity=FRONTEND_CAPACITY))

    group_vars = INVENTORY_DIR / "group_vars"
    group_vars.mkdir(exist_ok=True)
    text = _templates.get_template("group_vars_all.yml.j2").render(
        ssh_key=ssh_key, pki=pki, secrets_file=SECRETS_FILE,
        control_server_name=topology.CONTROL_SERVER_NAME, control_server_port=topology.CONTROL_SERVER_PORT)
    if extra_group_vars:
        text += yaml.safe_dump(extra_group_vars, sort_keys=False)
    (group_vars / "all.yml").write_text(text)
    return INVENTORY_FILE
