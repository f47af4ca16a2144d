"""Stack configuration: parse every `printer-fleet:<key>`, validate it, and derive names from it.

Validation runs before the program creates any resource, collects every problem of the stack at
once, and names each key with the command that fixes it.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

import pulumi
from pulumi.runtime import config as runtime_config

from infra.locations import LOCATIONS_BY_PROVIDER

PROJECT = "printer-fleet"

PROVIDERS = ("hcloud", "aws")

DEFAULT_CAPACITY = 150
DEFAULT_ADMIN_USER = "ansible"
DEFAULT_CONTROL_SERVER_NAME = "control-1"
DEFAULT_CONTROL_SERVER_PORT = 8443
DEFAULT_DNS_TTL = 300

# Every key this program reads from the `printer-fleet` namespace.
KNOWN_KEYS = (
    "provider",
    "region",
    "location",
    "frontendCount",
    "serverType",
    "capacity",
    "domain",
    "dnsZone",
    "adminCidrs",
    "sshPublicKey",
    "sshKeyName",
    "adminUser",
    "fleetName",
    "dnsTtl",
    "controlServer",
    "controlServerName",
    "controlServerType",
    "controlServerPort",
    "controlServerDomain",
)

# Provider credentials that must be stored encrypted when they are stored in the stack at all.
PROVIDER_CREDENTIAL_KEYS = ("hcloud:token", "aws:secretKey", "aws:accessKey", "aws:token")

# A DNS label as hostnames use it: letters, digits and inner hyphens, at most 63 characters.
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

# Fleet names and region names become hcloud label values, AWS tags and host names.
_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$")

# Login names that Debian's adduser accepts by default.
_USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")

# An OpenSSH public key line: type, base64 body, optional comment.
_SSH_PUBLIC_KEY = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|"
    r"sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}( [^\n]*)?$"
)

# hcloud server types look like cx23, cpx31, cax11 or ccx13, and AWS instance types like t3.small.
_HCLOUD_SERVER_TYPE = re.compile(r"^[a-z]{2,4}\d{2,3}$")
_AWS_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")

# hcloud label values: at most 63 characters, alphanumerics with inner '-', '_' or '.'.
_HCLOUD_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@dataclass(frozen=True)
class ConfigProblem:
    """One invalid or missing key, with the fix an operator can run."""

    key: str
    message: str
    fix: str

    def render(self) -> str:
        full_key = self.key if ":" in self.key else f"{PROJECT}:{self.key}"
        return f"{full_key}: {self.message}. Fix: {self.fix}"


class ConfigError(pulumi.RunError):
    """Invalid stack configuration, raised before any resource exists."""

    def __init__(self, stack: str, problems: list[ConfigProblem]):
        self.problems = problems
        lines = [f"invalid configuration of stack '{stack}' ({len(problems)} problem(s)):"]
        lines += [f"  - {problem.render()}" for problem in problems]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class FrontendPlan:
    """Names of one zrok frontend, derived from the stack configuration."""

    name: str
    index: int
    share_domain: str
    api_host: str

    @property
    def api_endpoint(self) -> str:
        return f"https://{self.api_host}"


@dataclass(frozen=True)
class ControlServerPlan:
    """Names and port of the stack's control-server host."""

    name: str
    server_type: str
    port: int
    domain: str

    @property
    def url(self) -> str:
        return f"https://{self.domain}:{self.port}"


@dataclass(frozen=True)
class StackConfig:
    """The validated configuration of one region stack."""

    stack: str
    provider: str
    region: str
    location: str
    frontend_count: int
    server_type: str
    capacity: int
    domain: str
    dns_zone: str
    admin_cidrs: tuple[str, ...]
    ssh_public_key: str
    ssh_key_name: Optional[str] = None
    admin_user: str = DEFAULT_ADMIN_USER
    fleet_name: str = PROJECT
    dns_ttl: int = DEFAULT_DNS_TTL
    control_server: Optional[ControlServerPlan] = None
    frontends: tuple[FrontendPlan, ...] = field(default=())

    def labels(self, role: str, **extra: str) -> dict[str, str]:
        """Return the labels (hcloud) or tags (AWS) that mark a resource of this fleet."""
        labels = {"fleet": self.fleet_name, "role": role, "region": self.region}
        labels.update(extra)
        return labels


def plan_frontends(region: str, domain: str, count: int) -> tuple[FrontendPlan, ...]:
    """Name the frontends of a region `<region>-<n>`, each with its own share domain.

    Every frontend gets the share domain `<frontend>.<domain>` and the API name
    `api.<frontend>.<domain>`. A public URL `https://<share>.<frontend>.<domain>` then resolves
    to the one instance that serves the share, and adding a frontend to a region never changes
    the URLs of the frontends that already exist.
    """
    plans = []
    for index in range(1, count + 1):
        name = f"{region}-{index}"
        share_domain = f"{name}.{domain}"
        plans.append(FrontendPlan(name, index, share_domain, f"api.{share_domain}"))
    return tuple(plans)


def _is_within(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)


def _is_dns_name(name: str) -> bool:
    if len(name) > 253 or "." not in name:
        return False
    return all(_DNS_LABEL.match(label) for label in name.split("."))


def _parse_int(raw: str, key: str, problems: list[ConfigProblem], example: str) -> Optional[int]:
    try:
        return int(raw)
    except ValueError:
        problems.append(ConfigProblem(key, f"must be a whole number, got {raw!r}", example))
        return None


def _parse_bool(raw: str, key: str, problems: list[ConfigProblem]) -> bool:
    value = raw.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no", ""):
        return False
    problems.append(
        ConfigProblem(key, f"must be true or false, got {raw!r}", f"pulumi config set {PROJECT}:{key} true")
    )
    return False


def _parse_admin_cidrs(raw: Optional[str], problems: list[ConfigProblem]) -> tuple[str, ...]:
    """Parse `adminCidrs` and reject any list that would open SSH to everyone."""
    fix = (
        f"pulumi config set --path '{PROJECT}:adminCidrs[0]' 198.51.100.7/32 "
        "(the public address of your office or VPN, never 0.0.0.0/0 or ::/0)"
    )
    if raw is None or raw.strip() == "":
        problems.append(ConfigProblem("adminCidrs", "is missing, so nobody could reach SSH", fix))
        return ()

    try:
        values = json.loads(raw)
    except json.JSONDecodeError:
        values = [raw]
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list) or not values:
        problems.append(ConfigProblem("adminCidrs", f"must be a non-empty list of CIDRs, got {raw!r}", fix))
        return ()

    networks = []
    for value in values:
        try:
            network = ipaddress.ip_network(str(value), strict=True)
        except ValueError as error:
            problems.append(ConfigProblem("adminCidrs", f"{value!r} is not a valid CIDR ({error})", fix))
            continue
        if network.prefixlen == 0:
            problems.append(ConfigProblem("adminCidrs", f"{value} opens SSH to everyone", fix))
            continue
        networks.append(network)

    # Several wide networks can cover a whole address family between them (0.0.0.0/1 + 128.0.0.0/1).
    for version, everyone in ((4, ipaddress.ip_network("0.0.0.0/0")), (6, ipaddress.ip_network("::/0"))):
        family = [network for network in networks if network.version == version]
        if everyone in list(ipaddress.collapse_addresses(family)):
            problems.append(
                ConfigProblem("adminCidrs", f"together the IPv{version} entries open SSH to everyone", fix)
            )

    return tuple(str(network) for network in networks)


def _check_ssh_public_key(raw: Optional[str], problems: list[ConfigProblem]) -> str:
    fix = f"pulumi config set {PROJECT}:sshPublicKey \"$(cat ~/.ssh/id_ed25519.pub)\""
    if raw is None or raw.strip() == "":
        problems.append(ConfigProblem("sshPublicKey", "is missing", fix))
        return ""
    key = raw.strip()
    if "PRIVATE KEY" in key:
        # The value never reaches the message: it is a private key.
        problems.append(ConfigProblem("sshPublicKey", "contains a private key, not a public key", fix))
        return ""
    if not _SSH_PUBLIC_KEY.match(key):
        problems.append(ConfigProblem("sshPublicKey", "is not a single OpenSSH public key line", fix))
        return ""
    return key


def parse_stack_config(
    stack: str,
    raw: Mapping[str, Optional[str]],
    plaintext_credentials: tuple[str, ...] = (),
) -> StackConfig:
    """Validate raw `printer-fleet:<key>` strings and return the stack's configuration.

    Raises ConfigError that lists every problem. Nothing is created before this returns.
    """
    problems: list[ConfigProblem] = []

    def text(key: str) -> Optional[str]:
        value = raw.get(key)
        return value.strip() if isinstance(value, str) and value.strip() != "" else None

    def require(key: str, example: str) -> str:
        value = text(key)
        if value is None:
            problems.append(ConfigProblem(key, "is missing", f"pulumi config set {PROJECT}:{key} {example}"))
            return ""
        return value

    for key in raw:
        if key not in KNOWN_KEYS:
            problems.append(
                ConfigProblem(key, "is not a key this program reads", f"pulumi config rm {PROJECT}:{key}")
            )

    for key in plaintext_credentials:
        problems.append(
            ConfigProblem(
                key,
                "is stored in plain text in the stack file",
                f"pulumi config set --secret {key} <value> (or export it in the environment instead)",
            )
        )

    fleet_name = text("fleetName") or PROJECT
    if not _NAME.match(fleet_name):
        problems.append(
            ConfigProblem(
                "fleetName",
                f"{fleet_name!r} must be lowercase letters, digits and inner hyphens, at most 32 characters",
                f"pulumi config set {PROJECT}:fleetName printer-fleet",
            )
        )

    provider = require("provider", "hcloud")
    if provider and provider not in PROVIDERS:
        problems.append(
            ConfigProblem(
                "provider",
                f"unknown provider {provider!r}, expected one of {', '.join(PROVIDERS)}",
                f"pulumi config set {PROJECT}:provider hcloud",
            )
        )
        provider = ""

    region = require("region", "eu-central")
    if region and not _NAME.match(region):
        problems.append(
            ConfigProblem(
                "region",
                f"{region!r} must be lowercase letters, digits and inner hyphens, at most 32 characters",
                f"pulumi config set {PROJECT}:region eu-central",
            )
        )

    location = require("location", "fsn1")
    if location and provider:
        known = LOCATIONS_BY_PROVIDER[provider]
        if location not in known:
            problems.append(
                ConfigProblem(
                    "location",
                    f"unknown {provider} location {location!r}, expected one of {', '.join(sorted(known))}",
                    f"pulumi config set {PROJECT}:location {sorted(known)[0]}",
                )
            )

    server_type = require("serverType", "cx23" if provider != "aws" else "t3.small")
    server_type_pattern = _AWS_INSTANCE_TYPE if provider == "aws" else _HCLOUD_SERVER_TYPE
    if server_type and provider and not server_type_pattern.match(server_type):
        example = "t3.small" if provider == "aws" else "cx23"
        problems.append(
            ConfigProblem(
                "serverType",
                f"{server_type!r} is not a {provider} server type",
                f"pulumi config set {PROJECT}:serverType {example}",
            )
        )

    capacity = DEFAULT_CAPACITY
    capacity_fix = f"pulumi config set {PROJECT}:capacity {DEFAULT_CAPACITY}"
    if text("capacity") is not None:
        parsed = _parse_int(text("capacity"), "capacity", problems, capacity_fix)
        if parsed is not None and parsed < 1:
            problems.append(ConfigProblem("capacity", f"must be at least 1, got {parsed}", capacity_fix))
        elif parsed is not None:
            capacity = parsed

    control_server_wanted = _parse_bool(text("controlServer") or "false", "controlServer", problems)

    frontend_count = 1
    count_fix = f"pulumi config set {PROJECT}:frontendCount 1"
    if text("frontendCount") is not None:
        parsed = _parse_int(text("frontendCount"), "frontendCount", problems, count_fix)
        if parsed is not None and parsed < 0:
            problems.append(ConfigProblem("frontendCount", f"must not be negative, got {parsed}", count_fix))
        elif parsed == 0 and not control_server_wanted:
            problems.append(
                ConfigProblem(
                    "frontendCount",
                    "is 0 and controlServer is false, so the stack would be empty",
                    count_fix,
                )
            )
        elif parsed is not None:
            frontend_count = parsed

    dns_zone = require("dnsZone", "fleet.example.com").lower().rstrip(".")
    if dns_zone and not _is_dns_name(dns_zone):
        problems.append(
            ConfigProblem(
                "dnsZone",
                f"{dns_zone!r} is not a DNS zone name",
                f"pulumi config set {PROJECT}:dnsZone fleet.example.com",
            )
        )

    domain = require("domain", "eu-central.fleet.example.com").lower().rstrip(".")
    if domain and not _is_dns_name(domain):
        problems.append(
            ConfigProblem(
                "domain",
                f"{domain!r} is not a DNS name",
                f"pulumi config set {PROJECT}:domain eu-central.fleet.example.com",
            )
        )
    elif domain and dns_zone and not _is_within(domain, dns_zone):
        problems.append(
            ConfigProblem(
                "domain",
                f"{domain} is outside dnsZone {dns_zone}, so its records could not be created",
                f"pulumi config set {PROJECT}:domain {region or 'eu-central'}.{dns_zone} "
                f"(or set {PROJECT}:dnsZone to a zone that contains {domain})",
            )
        )

    admin_cidrs = _parse_admin_cidrs(raw.get("adminCidrs"), problems)
    ssh_public_key = _check_ssh_public_key(raw.get("sshPublicKey"), problems)

    admin_user = text("adminUser") or DEFAULT_ADMIN_USER
    if not _USER_NAME.match(admin_user) or admin_user == "root":
        problems.append(
            ConfigProblem(
                "adminUser",
                f"{admin_user!r} must be a login name other than root (lowercase, at most 32 characters)",
                f"pulumi config set {PROJECT}:adminUser {DEFAULT_ADMIN_USER}",
            )
        )

    dns_ttl = DEFAULT_DNS_TTL
    ttl_fix = f"pulumi config set {PROJECT}:dnsTtl {DEFAULT_DNS_TTL}"
    if text("dnsTtl") is not None:
        parsed = _parse_int(text("dnsTtl"), "dnsTtl", problems, ttl_fix)
        if parsed is not None and not 60 <= parsed <= 86400:
            problems.append(ConfigProblem("dnsTtl", f"must be between 60 and 86400 seconds, got {parsed}", ttl_fix))
        elif parsed is not None:
            dns_ttl = parsed

    frontends = plan_frontends(region, domain, frontend_count) if region and domain else ()

    # The live inventory reads each frontend's share domain back from its hcloud labels.
    long_domains = [plan for plan in frontends if not _fits_hcloud_label(plan.share_domain)]
    if provider == "hcloud" and long_domains:
        problems.append(
            ConfigProblem(
                "domain",
                f"the share domain {long_domains[0].share_domain} of frontend {long_domains[0].name} is "
                "longer than the 63 characters of an hcloud label value",
                f"pulumi config set {PROJECT}:domain <a shorter name inside the dnsZone>",
            )
        )

    control_server = None
    if control_server_wanted:
        control_server = _parse_control_server(text, server_type, dns_zone, provider, problems)

    if problems:
        raise ConfigError(stack, problems)

    return StackConfig(
        stack=stack,
        provider=provider,
        region=region,
        location=location,
        frontend_count=frontend_count,
        server_type=server_type,
        capacity=capacity,
        domain=domain,
        dns_zone=dns_zone,
        admin_cidrs=admin_cidrs,
        ssh_public_key=ssh_public_key,
        ssh_key_name=text("sshKeyName"),
        admin_user=admin_user,
        fleet_name=fleet_name,
        dns_ttl=dns_ttl,
        control_server=control_server,
        frontends=frontends,
    )


def _fits_hcloud_label(value: str) -> bool:
    """Return whether Hetzner accepts `value` as a label value (63 characters at most)."""
    return len(value) <= 63 and bool(_HCLOUD_LABEL_VALUE.match(value))


def _parse_control_server(
    text: Callable[[str], Optional[str]],
    server_type: str,
    dns_zone: str,
    provider: str,
    problems: list[ConfigProblem],
) -> Optional[ControlServerPlan]:
    name = text("controlServerName") or DEFAULT_CONTROL_SERVER_NAME
    if not _NAME.match(name):
        problems.append(
            ConfigProblem(
                "controlServerName",
                f"{name!r} must be lowercase letters, digits and inner hyphens",
                f"pulumi config set {PROJECT}:controlServerName {DEFAULT_CONTROL_SERVER_NAME}",
            )
        )

    control_type = text("controlServerType") or server_type
    pattern = _AWS_INSTANCE_TYPE if provider == "aws" else _HCLOUD_SERVER_TYPE
    if control_type and provider and not pattern.match(control_type):
        problems.append(
            ConfigProblem(
                "controlServerType",
                f"{control_type!r} is not a {provider} server type",
                f"pulumi config rm {PROJECT}:controlServerType (to use serverType)",
            )
        )

    port = DEFAULT_CONTROL_SERVER_PORT
    port_fix = f"pulumi config set {PROJECT}:controlServerPort {DEFAULT_CONTROL_SERVER_PORT}"
    if text("controlServerPort") is not None:
        parsed = _parse_int(text("controlServerPort"), "controlServerPort", problems, port_fix)
        if parsed is not None and (not 1 <= parsed <= 65535 or parsed in (22, 80)):
            problems.append(
                ConfigProblem(
                    "controlServerPort",
                    f"must be a TCP port other than 22 and 80, got {parsed}",
                    port_fix,
                )
            )
        elif parsed is not None:
            port = parsed

    domain = (text("controlServerDomain") or f"control.{dns_zone}").lower().rstrip(".")
    domain_fix = f"pulumi config set {PROJECT}:controlServerDomain control.{dns_zone}"
    if dns_zone and not (_is_dns_name(domain) and _is_within(domain, dns_zone)):
        problems.append(
            ConfigProblem("controlServerDomain", f"{domain!r} is not a DNS name inside dnsZone {dns_zone}", domain_fix)
        )
    elif provider == "hcloud" and not _fits_hcloud_label(domain):
        problems.append(
            ConfigProblem(
                "controlServerDomain",
                f"{domain} is longer than the 63 characters of an hcloud label value",
                domain_fix,
            )
        )

    return ControlServerPlan(name=name, server_type=control_type, port=port, domain=domain)


def load_stack_config() -> StackConfig:
    """Read the running stack's configuration through the Pulumi SDK and validate it."""
    raw: dict[str, Optional[str]] = {}
    prefix = f"{PROJECT}:"
    # The SDK offers no public listing of config keys. Listing them lets unknown keys (typos) fail.
    present = set(runtime_config.CONFIG.get()) | set(pulumi.runtime.get_config_env())
    for full_key in sorted(present):
        if full_key.startswith(prefix):
            raw[full_key[len(prefix):]] = pulumi.runtime.get_config(full_key)

    for key in KNOWN_KEYS:
        raw.setdefault(key, pulumi.runtime.get_config(prefix + key))
    raw = {key: value for key, value in raw.items() if value is not None}

    secret_keys = set(pulumi.runtime.get_config_secret_keys_env())
    plaintext = tuple(
        key
        for key in PROVIDER_CREDENTIAL_KEYS
        if pulumi.runtime.get_config(key) is not None
        and not (pulumi.runtime.is_config_secret(key) or key in secret_keys)
    )
    return parse_stack_config(pulumi.get_stack(), raw, plaintext)
