"""The Pulumi program of one region stack."""

from __future__ import annotations

import pulumi

from infra.access import AdminSshKey
from infra.config import StackConfig, load_stack_config
from infra.control_server import ControlServerHost, ControlServerHostArgs
from infra.frontend import ZrokFrontend, ZrokFrontendArgs


def build_stack(
    config: StackConfig,
) -> tuple[list[ZrokFrontend], ControlServerHost | None]:
    """Create the admin key, the region's frontends and, if configured, the control-server host."""
    admin_key = AdminSshKey(
        f"{config.fleet_name}-{config.region}-admin",
        provider=config.provider,
        public_key=config.ssh_public_key,
        existing_key_name=config.ssh_key_name,
        labels=config.labels("admin-access"),
        location=config.location,
    )

    frontends = []
    for plan in config.frontends:
        frontend = ZrokFrontend(
            plan.name,
            ZrokFrontendArgs(
                provider=config.provider,
                region=config.region,
                location=config.location,
                server_type=config.server_type,
                capacity=config.capacity,
                share_domain=plan.share_domain,
                api_host=plan.api_host,
                dns_zone=config.dns_zone,
                dns_ttl=config.dns_ttl,
                admin_cidrs=config.admin_cidrs,
                admin_user=config.admin_user,
                ssh_public_key=config.ssh_public_key,
                ssh_key=admin_key.reference,
                fleet_name=config.fleet_name,
            ),
        )
        frontends.append(frontend)

    control_server = None
    if config.control_server is not None:
        plan = config.control_server
        control_server = ControlServerHost(
            plan.name,
            ControlServerHostArgs(
                provider=config.provider,
                region=config.region,
                location=config.location,
                server_type=plan.server_type,
                port=plan.port,
                domain=plan.domain,
                dns_zone=config.dns_zone,
                dns_ttl=config.dns_ttl,
                admin_cidrs=config.admin_cidrs,
                admin_user=config.admin_user,
                ssh_public_key=config.ssh_public_key,
                ssh_key=admin_key.reference,
                fleet_name=config.fleet_name,
            ),
        )

    return frontends, control_server


def main() -> None:
    """Validate the stack configuration, create the stack's hosts, and export what the inventory needs."""
    config = load_stack_config()
    frontends, control_server = build_stack(config)

    pulumi.export("fleet", config.fleet_name)
    pulumi.export("region", config.region)
    pulumi.export("provider", config.provider)
    pulumi.export("admin_user", config.admin_user)
    pulumi.export("frontends", [frontend.summary() for frontend in frontends])
    if control_server is not None:
        pulumi.export("control_server", control_server.summary())
