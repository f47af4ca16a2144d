"""The frontends of the fleet, read from the Ansible inventory with ansible-core's own API.

Every inventory form that Ansible accepts works: a YAML or INI file, a directory of them, with
group_vars and host_vars beside them. Frontends are the hosts of group `zrok_frontends`.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from controlserver.errors import InventoryError
from controlserver.locations import LOCATIONS

# A file Ansible cannot parse fails the load instead of being skipped with a warning, and a
# duplicate YAML key (such as a host listed twice in one group) is an error instead of "last wins".
# These must be set before ansible is imported, since ansible reads its configuration at import.
os.environ.setdefault("ANSIBLE_INVENTORY_UNPARSED_FAILED", "true")
os.environ.setdefault("ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED", "true")
os.environ.setdefault("ANSIBLE_DUPLICATE_YAML_DICT_KEY", "error")
# Ansible's scratch directory defaults to ~/.ansible/tmp, which a sandboxed service user may not
# be allowed to create.
os.environ.setdefault("ANSIBLE_LOCAL_TEMP", os.path.join(tempfile.gettempdir(), "controlserver-ansible"))

import ansible.inventory.manager as ansible_inventory_manager  # noqa: E402
from ansible.errors import AnsibleError  # noqa: E402
from ansible.inventory.manager import InventoryManager  # noqa: E402
from ansible.parsing.dataloader import DataLoader  # noqa: E402
from ansible.template import Templar  # noqa: E402
from ansible.vars.manager import VariableManager  # noqa: E402

FRONTEND_GROUP = "zrok_frontends"
REQUIRED_FIELDS = ("fleet_region", "fleet_location", "fleet_capacity", "zrok_api_endpoint", "zrok_share_domain")
DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class FrontendConfig:
    """One frontend as the inventory describes it."""

    name: str
    region: str
    location: str
    latitude: float
    longitude: float
    capacity: int
    api_endpoint: str
    share_domain: str
    health_url: str


def load_inventory(path: Path) -> dict[str, FrontendConfig]:
    """Read and check the frontends of the inventory at `path`.

    Raises InventoryError naming the host and field when anything is missing or invalid.
    """
    if not path.exists():
        raise InventoryError(f"inventory {path} does not exist")

    loader = DataLoader()
    collector = _ParseFailureCollector(ansible_inventory_manager.display)
    with _LOAD_LOCK:
        ansible_inventory_manager.display = collector
        try:
            inventory = InventoryManager(loader=loader, sources=[str(path)])
        except AnsibleError as exc:
            detail = collector.failures[0] if collector.failures else _first_line(exc)
            raise InventoryError(f"inventory {path} cannot be parsed: {detail}") from exc
        finally:
            ansible_inventory_manager.display = collector.display
    variables = VariableManager(loader=loader, inventory=inventory)

    group = inventory.groups.get(FRONTEND_GROUP)
    if group is None:
        raise InventoryError(f"inventory {path} has no group {FRONTEND_GROUP}: add the frontends to it")

    frontends: dict[str, FrontendConfig] = {}
    for host in sorted(group.get_hosts(), key=lambda h: h.name):
        host_vars = _host_vars(path, variables, host)
        templar = Templar(loader=loader, variables=host_vars)
        frontends[host.name] = _frontend_from_vars(host.name, host_vars, templar)

    _reject_duplicates(frontends, "zrok_api_endpoint", lambda f: f.api_endpoint)
    _reject_duplicates(frontends, "zrok_share_domain", lambda f: f.share_domain)
    return frontends


_LOAD_LOCK = threading.Lock()


def _host_vars(path: Path, variables: VariableManager, host: Any) -> dict[str, Any]:
    try:
        return variables.get_vars(host=host, include_hostvars=False)
    except AnsibleError as exc:
        detail = _first_line(exc)
        if "vault" in detail.lower():
            raise InventoryError(
                f"inventory {path}: a group_vars or host_vars file of frontend {host.name} is encrypted with "
                "Ansible Vault, which the control server cannot read: move the vault file out of the "
                "inventory directory and pass it to ansible-playbook with -e @FILE"
            ) from exc
        raise InventoryError(f"inventory {path}: variables of frontend {host.name} cannot be read: {detail}") from exc


class _ParseFailureCollector:
    """Stand in for ansible's display while parsing, keeping each plugin's parse error.

    Ansible prints parse errors as warnings on stderr and then raises a generic error; the
    collector keeps them so the InventoryError can state what is wrong and where.
    """

    def __init__(self, display: Any) -> None:
        self.display = display
        self.failures: list[str] = []

    def error_as_warning(self, msg: str, exception: BaseException, **_kwargs: Any) -> None:
        origin = getattr(exception, "obj", None)
        where = f" ({getattr(origin, 'path', origin)}:{getattr(origin, 'line_num', '?')})" if origin else ""
        self.failures.append(f"{_first_line(exception)}{where}")

    def warning(self, msg: str, *_args: Any, **_kwargs: Any) -> None:
        self.failures.append(msg)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.display, name)


def _frontend_from_vars(name: str, host_vars: dict[str, Any], templar: Templar) -> FrontendConfig:
    def value(field: str, default: Any = None) -> Any:
        raw = host_vars.get(field, default)
        try:
            return templar.template(raw) if isinstance(raw, str) else raw
        except AnsibleError as exc:
            raise InventoryError(f"frontend {name}: {field} cannot be templated: {_first_line(exc)}") from exc

    for field in REQUIRED_FIELDS:
        if value(field) in (None, ""):
            raise InventoryError(f"frontend {name}: {field} is missing: set it in the inventory or group_vars")

    region = str(value("fleet_region"))
    location = str(value("fleet_location"))

    capacity_raw = value("fleet_capacity")
    try:
        if isinstance(capacity_raw, bool) or isinstance(capacity_raw, float):
            raise ValueError
        capacity = int(str(capacity_raw))
    except ValueError:
        raise InventoryError(
            f"frontend {name}: fleet_capacity {capacity_raw!r} is invalid: use a whole number of printers"
        ) from None
    if capacity < 0:
        raise InventoryError(f"frontend {name}: fleet_capacity {capacity} is invalid: it must be 0 or more")

    latitude, longitude = _coordinates(name, location, value("fleet_latitude"), value("fleet_longitude"))

    api_endpoint = str(value("zrok_api_endpoint")).rstrip("/")
    _require_http_url(name, "zrok_api_endpoint", api_endpoint)

    share_domain = str(value("zrok_share_domain")).lower().strip(".")
    if not DOMAIN_RE.match(share_domain):
        raise InventoryError(f"frontend {name}: zrok_share_domain {share_domain!r} is not a valid DNS name")

    health_url = value("fleet_health_url")
    if health_url in (None, ""):
        address = value("ansible_host") or name
        address = f"[{address}]" if ":" in str(address) else str(address)
        health_url = f"http://{address}/healthz"
    health_url = str(health_url)
    _require_http_url(name, "fleet_health_url", health_url)

    return FrontendConfig(
        name=name,
        region=region,
        location=location,
        latitude=latitude,
        longitude=longitude,
        capacity=capacity,
        api_endpoint=api_endpoint,
        share_domain=share_domain,
        health_url=health_url,
    )


def _coordinates(name: str, location: str, latitude: Any, longitude: Any) -> tuple[float, float]:
    if (latitude is None) != (longitude is None):
        raise InventoryError(f"frontend {name}: set both fleet_latitude and fleet_longitude, or neither")
    if latitude is not None:
        try:
            lat, lon = float(latitude), float(longitude)
        except (TypeError, ValueError):
            raise InventoryError(f"frontend {name}: fleet_latitude/fleet_longitude must be numbers") from None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise InventoryError(f"frontend {name}: fleet_latitude/fleet_longitude are out of range")
        return lat, lon
    if location not in LOCATIONS:
        raise InventoryError(
            f"frontend {name}: fleet_location {location!r} is not a known Hetzner Cloud location or "
            "AWS region: fix it, or set fleet_latitude and fleet_longitude"
        )
    return LOCATIONS[location]


def _require_http_url(name: str, field: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InventoryError(f"frontend {name}: {field} {url!r} is not an http(s) URL")


def _reject_duplicates(frontends: dict[str, FrontendConfig], field: str, key) -> None:
    seen: dict[str, str] = {}
    for frontend in frontends.values():
        other = seen.setdefault(key(frontend), frontend.name)
        if other != frontend.name:
            raise InventoryError(
                f"frontend {frontend.name}: {field} {key(frontend)!r} duplicates frontend {other}: "
                "each frontend needs its own"
            )


def _first_line(exc: Exception) -> str:
    text = str(getattr(exc, "message", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
