"""Hosts, addresses and names of the lab fleet."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

BRIDGE = "fleetlab0"
SUBNET = "10.213.47.0/24"
PREFIX_LENGTH = 24
BRIDGE_ADDRESS = "10.213.47.1"
DNS_DOMAIN = "fleet.test"
DNS_SERVER = "10.213.47.5"
CONTROL_SERVER_NAME = "control.fleet.test"
CONTROL_SERVER_PORT = 8443

# State lives outside the repository so that a fresh clone (CI) finds the cached image and a
# running lab is found again by `down` from any checkout.
CACHE_DIR = Path(os.environ.get("FLEET_LAB_CACHE_DIR", "/var/cache/printer-fleet-lab"))
STATE_DIR = Path(os.environ.get("FLEET_LAB_STATE_DIR", "/var/lib/printer-fleet-lab"))
REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = REPO_ROOT / "build" / "lab"


@dataclasses.dataclass(frozen=True)
class Host:
    """One lab host: its name is also its machine name, netns name and inventory name."""

    name: str
    address: str
    kind: str  # frontend | control | printer | client
    region: str | None = None
    location: str | None = None

    @property
    def share_domain(self) -> str | None:
        return f"{self.region}.{DNS_DOMAIN}" if self.kind == "frontend" else None

    @property
    def api_endpoint(self) -> str | None:
        return f"https://api.{self.share_domain}" if self.kind == "frontend" else None

    @property
    def veth_host(self) -> str:
        # Interface names are limited to 15 characters: "fl-" plus the host name fits.
        return f"fl-{self.name}"[:15]


FRONTENDS = [
    Host("lab-eu-1", "10.213.47.11", "frontend", region="lab-eu", location="fsn1"),
    Host("lab-us-1", "10.213.47.12", "frontend", region="lab-us", location="us-east-1"),
]
CONTROL = Host("control-1", "10.213.47.5", "control", location="fsn1")
PRINTERS = [Host(f"printer-{i:02d}", f"10.213.47.{20 + i}", "printer") for i in range(1, 7)]
CLIENT = Host("client-1", "10.213.47.30", "client")
HOSTS = [CONTROL, *FRONTENDS, *PRINTERS, CLIENT]

# Printers carry a location so the control server can pick the nearest frontend: the first half
# sit near the EU frontend, the rest near the US one.
PRINTER_LOCATIONS = {p.name: ("fsn1" if i < 3 else "us-east-1") for i, p in enumerate(PRINTERS)}


def host_by_name(name: str) -> Host:
    for host in HOSTS:
        if host.name == name:
            return host
    raise KeyError(f"no lab host named {name!r}; known hosts: {', '.join(h.name for h in HOSTS)}")
