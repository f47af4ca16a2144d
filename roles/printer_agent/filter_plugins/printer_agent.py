"""Filters of the printer_agent role."""

from __future__ import annotations

import ipaddress

_LOOPBACK_NETWORKS = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
    ipaddress.ip_network("::ffff:127.0.0.0/104"),
)


def printer_agent_unsafe_trusted_clients(entries: list[str]) -> list[str]:
    """Return the trusted_clients entries that would let a tunnelled request pass as trusted.

    Every request through a zrok share reaches Moonraker from 127.0.0.1, so an entry is unsafe when
    it is a loopback address, a range that contains loopback, or a host name (which may resolve to
    localhost). Entries that are neither an IP address nor a CIDR range are returned too.
    """
    unsafe = []
    for entry in entries:
        text = str(entry).strip()
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError:
            unsafe.append(text)
            continue
        if any(network.version == loopback.version and network.overlaps(loopback) for loopback in _LOOPBACK_NETWORKS):
            unsafe.append(text)
    return unsafe


class FilterModule:
    def filters(self):
        return {"printer_agent_unsafe_trusted_clients": printer_agent_unsafe_trusted_clients}
