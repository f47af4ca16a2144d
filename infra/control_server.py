"""ControlServerHost: the host that runs the printer-fleet control server."""

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

ROLE = "control-server"


@dataclass(frozen=True)
class ControlServerHostArgs:
    """Inputs of the control-server host."""

    provider: str
    region: str
    location: str
    server_type: str
    port: int
    domain: str
    dns_zone: str
    dns_ttl: int
    admin_cidrs: tuple[str, ...]
    admin_user: str
    ssh_public_key: str
    ssh_key: pulumi.Input[str]
    fleet_name: str


class ControlServerHost(pulumi.ComponentResource):
    """A Debian 12 host for the control server, reachable by every printer on its HTTPS port."""

    ipv4: pulumi.Output[str]
    ipv6: pulumi.Output[Optional[str]]
    url: str

    def __init__(
        self,
        name: str,
        args: ControlServerHostArgs,
        opts: Optional[pulumi.ResourceOptions] = None,
    ):
        super().__init__("printer-fleet:control:ControlServerHost", name, None, opts)
        self.args = args
        self.host_name = name
        self.url = f"https://{args.domain}:{args.port}"

        # Printers enroll and heartbeat from anywhere, so the HTTPS port is open to the world. The
        # control server gets its certificate as files from Ansible, so port 80 stays closed.
        ingress = (
            IngressRule(
                args.port, "HTTPS: control server API for printers and operators", WORLD
            ),
            admin_ssh_rule(args.admin_cidrs),
        )
        spec = HostSpec(
            hostname=name,
            location=args.location,
            server_type=args.server_type,
            ingress=ingress,
            user_data=render_user_data(
                hostname=name,
                fqdn=args.domain,
                role=ROLE,
                region=args.region,
                fleet_name=args.fleet_name,
                admin_user=args.admin_user,
                ssh_public_key=args.ssh_public_key,
            ),
            # The live inventories (inventory/live/) rebuild the inventory host vars from these labels.
            labels={
                "fleet": args.fleet_name,
                "role": ROLE,
                "region": args.region,
                "domain": args.domain,
                "port": str(args.port),
                "admin-user": args.admin_user,
            },
            dns_zone=args.dns_zone,
            dns_names=(DnsName("dns", args.domain),),
            dns_ttl=args.dns_ttl,
            ssh_key=args.ssh_key,
        )
        host = create_host(self, name, args.provider, spec)
        self.ipv4 = host.ipv4
        self.ipv6 = host.ipv6

        self.register_outputs({"ipv4": self.ipv4, "ipv6": self.ipv6, "url": self.url})

    def summary(self) -> dict[str, Any]:
        """Return the stack-output entry of the control server, as the inventory command reads it."""
        return {
            "name": self.host_name,
            "provider": self.args.provider,
            "region": self.args.region,
            "location": self.args.location,
            "ipv4": self.ipv4,
            "ipv6": self.ipv6,
            "domain": self.args.domain,
            "url": self.url,
        }
