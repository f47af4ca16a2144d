"""Hetzner Cloud resources of one host: firewall, primary IPs, server, RRSets in Hetzner DNS."""

from __future__ import annotations

import pulumi
import pulumi_hcloud as hcloud

from infra.hosts import HostOutputs, HostSpec, relative_name

DEBIAN_IMAGE = "debian-12"

# The provider replaces a server when these change, but they act at first boot only. Ansible
# manages the host from then on, so a new key or new cloud-init must not destroy a frontend.
FIRST_BOOT_ONLY = ["ssh_keys", "user_data"]


def _firewall_rules(spec: HostSpec) -> list[hcloud.FirewallRuleArgs]:
    # Without any "out" rule hcloud allows all outbound traffic, which apt and ACME need.
    return [
        hcloud.FirewallRuleArgs(
            direction="in",
            protocol="tcp",
            port=str(rule.port),
            source_ips=list(rule.sources),
            description=rule.description,
        )
        for rule in spec.ingress
    ]


def create_hcloud_host(
    parent: pulumi.ComponentResource, name: str, spec: HostSpec
) -> HostOutputs:
    child = pulumi.ResourceOptions(parent=parent)
    labels = dict(spec.labels)

    firewall = hcloud.Firewall(
        f"{name}-firewall",
        name=spec.hostname,
        rules=_firewall_rules(spec),
        labels=labels,
        opts=child,
    )

    # Primary IPs outlive the server (auto_delete off), so a replaced server keeps its addresses.
    ipv4 = hcloud.PrimaryIp(
        f"{name}-ipv4",
        name=f"{spec.hostname}-ipv4",
        type="ipv4",
        location=spec.location,
        assignee_type="server",
        auto_delete=False,
        labels=labels,
        opts=child,
    )
    ipv6 = hcloud.PrimaryIp(
        f"{name}-ipv6",
        name=f"{spec.hostname}-ipv6",
        type="ipv6",
        location=spec.location,
        assignee_type="server",
        auto_delete=False,
        labels=labels,
        opts=child,
    )

    server = hcloud.Server(
        f"{name}-server",
        name=spec.hostname,
        server_type=spec.server_type,
        image=DEBIAN_IMAGE,
        location=spec.location,
        ssh_keys=[spec.ssh_key],
        firewall_ids=[firewall.id.apply(int)],
        public_nets=[
            hcloud.ServerPublicNetArgs(
                ipv4_enabled=True,
                ipv4=ipv4.id.apply(int),
                ipv6_enabled=True,
                ipv6=ipv6.id.apply(int),
            )
        ],
        user_data=spec.user_data,
        labels=labels,
        opts=pulumi.ResourceOptions(parent=parent, ignore_changes=FIRST_BOOT_ONLY),
    )

    for dns_name in spec.dns_names:
        record_name = relative_name(dns_name.fqdn, spec.dns_zone)
        hcloud.ZoneRrset(
            f"{name}-{dns_name.role}-a",
            zone=spec.dns_zone,
            name=record_name,
            type="A",
            ttl=spec.dns_ttl,
            records=[hcloud.ZoneRrsetRecordArgs(value=ipv4.ip_address)],
            labels=labels,
            opts=child,
        )
        hcloud.ZoneRrset(
            f"{name}-{dns_name.role}-aaaa",
            zone=spec.dns_zone,
            name=record_name,
            type="AAAA",
            ttl=spec.dns_ttl,
            records=[hcloud.ZoneRrsetRecordArgs(value=server.ipv6_address)],
            labels=labels,
            opts=child,
        )

    return HostOutputs(
        server_id=server.id, ipv4=ipv4.ip_address, ipv6=server.ipv6_address
    )
