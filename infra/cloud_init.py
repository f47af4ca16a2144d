"""Cloud-init user data that prepares a fresh Debian 12 host for Ansible."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jinja2
import yaml

TEMPLATES = Path(__file__).resolve().parent / "templates"

# Packages that Ansible needs before its first run on Debian 12.
ANSIBLE_PACKAGES = ("python3", "python3-apt", "sudo", "ca-certificates")


def yaml_scalar(value: object) -> str:
    """Render one value as a YAML flow scalar, quoted when YAML needs quotes."""
    return (
        yaml.safe_dump(value, default_flow_style=True, width=10_000)
        .removesuffix("\n...\n")
        .strip()
    )


@lru_cache(maxsize=1)
def template_environment() -> jinja2.Environment:
    """Return the Jinja2 environment of infra/templates, built once per process."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    environment.filters["yaml_scalar"] = yaml_scalar
    return environment


def render_user_data(
    *,
    hostname: str,
    fqdn: str,
    role: str,
    region: str,
    fleet_name: str,
    admin_user: str,
    ssh_public_key: str,
) -> str:
    """Render the `#cloud-config` user data of one host."""
    template = template_environment().get_template("cloud-init.yaml.j2")
    return template.render(
        hostname=hostname,
        fqdn=fqdn,
        role=role,
        region=region,
        fleet_name=fleet_name,
        admin_user=admin_user,
        ssh_public_key=ssh_public_key,
        packages=ANSIBLE_PACKAGES,
    )
