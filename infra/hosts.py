"""Provider-neutral description of a public host: firewall, server, stable IPs and DNS names.

The components (ZrokFrontend, ControlServerHost) describe what they need with a HostSpec, and a
provider module (hcloud_host, aws_host) turns the spec into resources that are children of the
component.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import pulumi

WORLD = ("0.0.0.0/0", "::/0")

SSH_PORT = 22


@dataclass(frozen=True)
class IngressRule:
    """One inbound TCP port and the networks allowed to reach it."""

    port: int
    description: str
    sources: tuple[str, ...]

    @property
    def ipv4_sources(self) -> list[str]:
        return [source for source in self.sources if ":" not in source]

    @property
    def ipv6_sources(self) -> list[str]:
        return [source for source in self.sources if ":" in source]


@dataclass(frozen=True)
class DnsName:
    """A name that must resolve to the host. `role` goes into the Pulumi names of its records."""

    role: str
    fqdn: str


@dataclass(frozen=True)
class HostSpec:
    """Everything a provider module needs to create one public Debian 12 host."""

    hostname: str
    location: str
    server_type: str
    ingress: tuple[IngressRule, ...]
    user_data: str
    labels: Mapping[str, str]
    dns_zone: str
    dns_names: tuple[DnsName, ...]
    dns_ttl: int
    ssh_key: pulumi.Input[str]


@dataclass
class HostOutputs:
    """Addresses of a created host, with ipv6 None where the provider gives the host no IPv6."""

    server_id: pulumi.Output[str]
    ipv4: pulumi.Output[str]
    ipv6: pulumi.Output[Optional[str]]


def admin_ssh_rule(admin_cidrs: tuple[str, ...]) -> IngressRule:
    """Return the SSH rule: the admin networks only, never the world."""
    return IngressRule(SSH_PORT, "SSH from the admin networks", tuple(admin_cidrs))


def relative_name(fqdn: str, zone: str) -> str:
    """Return `fqdn` relative to `zone` ("@" for the zone apex), as hcloud RRSets name records."""
    if fqdn == zone:
        return "@"
    suffix = "." + zone
    if not fqdn.endswith(suffix):
        raise ValueError(f"{fqdn} is outside the DNS zone {zone}")
    return fqdn[: -len(suffix)]


def create_host(
    parent: pulumi.ComponentResource, name: str, provider: str, spec: HostSpec
) -> HostOutputs:
    """Create the resources of one host as children of `parent`, named `<name>-<role>`."""
    if provider == "hcloud":
        from infra.hcloud_host import create_hcloud_host

        return create_hcloud_host(parent, name, spec)

    if provider == "aws":
        from infra.aws_host import create_aws_host

        return create_aws_host(parent, name, spec)

    raise ValueError(f"unknown provider {provider!r}")
