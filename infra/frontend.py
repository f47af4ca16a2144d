"""ZrokFrontend: one regional zrok v2 instance host (OpenZiti controller and router, zrok controller
and dynamic proxy frontend), on Hetzner Cloud or AWS."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi

from infra.cloud_init import render_user_data
from infra.hosts import (
    WORLD,
    DnsName,
    HostSpec,
    IngressRule,
    admin_ssh_rule,
    create_host,
)

ROLE = "zrok-frontend"

# The public ports of a frontend. SSH from the admin networks is the only other open port. The zrok
# controller API and the public shares share 443. zrok clients (the printers' agents) also talk to
# the OpenZiti controller's edge client API directly, to authenticate the identity that
# `zrok2 enable` gave them, and then dial the edge router. Both ports are the zrok_frontend role's
# defaults (zrok_frontend_ziti_controller_port, zrok_frontend_ziti_router_port).
ZITI_CONTROLLER_PORT = 1280
ZITI_ROUTER_PORT = 3022
FRONTEND_PUBLIC_PORTS = (
    IngressRule(80, "HTTP for ACME challenges and redirects to HTTPS", WORLD),
    IngressRule(443, "HTTPS: public shares and the zrok controller API", WORLD),
    IngressRule(ZITI_CONTROLLER_PORT, "OpenZiti controller edge API for zrok clients", WORLD),
    IngressRule(ZITI_ROUTER_PORT, "OpenZiti edge router, dialled by zrok shares", WORLD),
)


@dataclass(frozen=True)
class ZrokFrontendArgs:
    """Inputs of one zrok frontend."""

    provider: str
    region: str
    location: str
    server_type: str
    capacity: int
    share_domain: str
    api_host: str
    dns_zone: str
    dns_ttl: int
    admin_cidrs: tuple[str, ...]
    admin_user: str
    ssh_public_key: str
    ssh_key: pulumi.Input[str]
    fleet_name: str


class ZrokFrontend(pulumi.ComponentResource):
    """A Debian 12 host for one zrok instance, with its firewall, stable IPs and DNS names.

    DNS: `api.<share domain>` for the zrok controller API and `*.<share domain>` for the public
    URLs of the shares the instance serves.
    """

    ipv4: pulumi.Output[str]
    ipv6: pulumi.Output[Optional[str]]
    api_endpoint: str
    share_domain: str

    def __init__(
        self,
        name: str,
        args: ZrokFrontendArgs,
        opts: Optional[pulumi.ResourceOptions] = None,
    ):
        super().__init__("printer-fleet:frontend:ZrokFrontend", name, None, opts)
        self.args = args
        self.frontend_name = name
        self.share_domain = args.share_domain
        self.api_endpoint = f"https://{args.api_host}"

        # The live inventories (inventory/live/) rebuild the inventory host vars from these labels.
        labels = {
            "fleet": args.fleet_name,
            "role": ROLE,
            "region": args.region,
            "frontend": name,
            "capacity": str(args.capacity),
            "share-domain": args.share_domain,
            "admin-user": args.admin_user,
        }
        spec = HostSpec(
            hostname=name,
            location=args.location,
            server_type=args.server_type,
            ingress=FRONTEND_PUBLIC_PORTS + (admin_ssh_rule(args.admin_cidrs),),
            user_data=render_user_data(
                hostname=name,
                fqdn=args.api_host,
                role=ROLE,
                region=args.region,
                fleet_name=args.fleet_name,
                admin_user=args.admin_user,
                ssh_public_key=args.ssh_public_key,
            ),
            labels=labels,
            dns_zone=args.dns_zone,
            dns_names=(
                DnsName("api", args.api_host),
                DnsName("wildcard", f"*.{args.share_domain}"),
            ),
            dns_ttl=args.dns_ttl,
            ssh_key=args.ssh_key,
        )
        host = create_host(self, name, args.provider, spec)
        self.ipv4 = host.ipv4
        self.ipv6 = host.ipv6

        self.register_outputs(
            {
                "ipv4": self.ipv4,
                "ipv6": self.ipv6,
                "api_endpoint": self.api_endpoint,
                "share_domain": self.share_domain,
            }
        )

    def summary(self) -> dict[str, Any]:
        """Return the stack-output entry of this frontend, as the inventory command reads it."""
        return {
            "name": self.frontend_name,
            "provider": self.args.provider,
            "region": self.args.region,
            "location": self.args.location,
            "ipv4": self.ipv4,
            "ipv6": self.ipv6,
            "api_endpoint": self.api_endpoint,
            "domain": self.share_domain,
            "capacity": self.args.capacity,
        }
