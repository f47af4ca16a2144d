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
GROUP_VARS_DIR = INVENTORY_DIR / "group_vars" / "all"
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


def write_inventory(ssh_key: Path, pki_dir: Path) -> Path:
    """Write the inventory and the lab's static group_vars (group_vars/all/lab.yml)."""
    INVENTORY_DIR.mkdir(parents=True, exist_ok=True)
    INVENTORY_FILE.write_text(_templates.get_template("inventory.yml.j2").render(
        frontends=topology.FRONTENDS, control=topology.CONTROL, printers=topology.PRINTERS,
        client=topology.CLIENT, printer_locations=topology.PRINTER_LOCATIONS,
        frontend_capacity=FRONTEND_CAPACITY))

    GROUP_VARS_DIR.mkdir(parents=True, exist_ok=True)
    (GROUP_VARS_DIR / "lab.yml").write_text(_templates.get_template("group_vars_all.yml.j2").render(
        ssh_key=ssh_key, pki_dir=pki_dir, secrets_file=SECRETS_FILE,
        control_server_name=topology.CONTROL_SERVER_NAME, control_server_port=topology.CONTROL_SERVER_PORT))
    return INVENTORY_FILE


def write_group_vars(name: str, values: dict, comment: str) -> None:
    """Write generated variables to group_vars/all/<name>.yml."""
    GROUP_VARS_DIR.mkdir(parents=True, exist_ok=True)
    text = "".join(f"# {line}\n" for line in comment.splitlines()) + yaml.safe_dump(values, sort_keys=False)
    (GROUP_VARS_DIR / f"{name}.yml").write_text(text)
