"""Stack configuration: parse every `printer-fleet:<key>`, validate it, and derive names from it.

Validation runs before the program creates any resource, collects every problem of the stack at
once, and names each key with the command that fixes it.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Mapping, Optional

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
PROVIDER_CREDENTIAL_KEYS = (
    "hcloud:token",
    "aws:secretKey",
    "aws:accessKey",
    "aws:token",
)

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
        lines = [
            f"invalid configuration of stack '{stack}' ({len(problems)} problem(s)):"
        ]
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


class _ConfigReader:
    """Raw `printer-fleet:<key>` strings and the problems found in them so far."""

    def __init__(self, raw: Mapping[str, Optional[str]]):
        self.raw = raw
        self.problems: list[ConfigProblem] = []

    def add(self, key: str, message: str, fix: str) -> None:
        self.problems.append(ConfigProblem(key, message, fix))

    def text(self, key: str) -> Optional[str]:
        value = self.raw.get(key)
        return value.strip() if isinstance(value, str) and value.strip() != "" else None

    def require(self, key: str, example: str) -> str:
        value = self.text(key)
        if value is None:
            self.add(key, "is missing", f"pulumi config set {PROJECT}:{key} {example}")
            return ""
        return value

    def integer(self, key: str, default: int) -> Optional[int]:
        """Return the key as a whole number, `default` when unset, or None after recording a problem."""
        value = self.text(key)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            self.add(
                key,
                f"must be a whole number, got {value!r}",
                f"pulumi config set {PROJECT}:{key} {default}",
            )
            return None

    def boolean(self, key: str) -> bool:
        value = (self.text(key) or "false").lower()
        if value in ("true", "1", "yes"):
            return True
        if value not in ("false", "0", "no"):
            self.add(
                key,
                f"must be true or false, got {value!r}",
                f"pulumi config set {PROJECT}:{key} true",
            )
        return False


def _read_placement(reader: _ConfigReader) -> tuple[str, str, str, str, str]:
    """Read fleetName, provider, region, location and serverType."""
    name_rule = (
        "must be lowercase letters, digits and inner hyphens, at most 32 characters"
    )

    fleet_name = reader.text("fleetName") or PROJECT
    if not _NAME.match(fleet_name):
        reader.add(
            "fleetName",
            f"{fleet_name!r} {name_rule}",
            f"pulumi config set {PROJECT}:fleetName {PROJECT}",
        )

    provider = reader.require("provider", "hcloud")
    if provider and provider not in PROVIDERS:
        reader.add(
            "provider",
            f"unknown provider {provider!r}, expected one of {', '.join(PROVIDERS)}",
            f"pulumi config set {PROJECT}:provider hcloud",
        )
        provider = ""

    region = reader.require("region", "eu-central")
    if region and not _NAME.match(region):
        reader.add(
            "region",
            f"{region!r} {name_rule}",
            f"pulumi config set {PROJECT}:region eu-central",
        )

    location = reader.require("location", "fsn1")
    if location and provider and location not in LOCATIONS_BY_PROVIDER[provider]:
        known = sorted(LOCATIONS_BY_PROVIDER[provider])
        reader.add(
            "location",
            f"unknown {provider} location {location!r}, expected one of {', '.join(known)}",
            f"pulumi config set {PROJECT}:location {known[0]}",
        )

    example = "t3.small" if provider == "aws" else "cx23"
    server_type = reader.require("serverType", example)
    if server_type and provider and not _is_server_type(provider, server_type):
        reader.add(
            "serverType",
            f"{server_type!r} is not a {provider} server type",
            f"pulumi config set {PROJECT}:serverType {example}",
        )

    return fleet_name, provider, region, location, server_type


def _is_server_type(provider: str, server_type: str) -> bool:
    pattern = _AWS_INSTANCE_TYPE if provider == "aws" else _HCLOUD_SERVER_TYPE
    return bool(pattern.match(server_type))


def _read_sizes(reader: _ConfigReader, control_server_wanted: bool) -> tuple[int, int]:
    """Read capacity and frontendCount."""
    capacity = reader.integer("capacity", DEFAULT_CAPACITY)
    if capacity is not None and capacity < 1:
        reader.add(
            "capacity",
            f"must be at least 1, got {capacity}",
            f"pulumi config set {PROJECT}:capacity {DEFAULT_CAPACITY}",
        )

    count_fix = f"pulumi config set {PROJECT}:frontendCount 1"
    frontend_count = reader.integer("frontendCount", 1)
    if frontend_count is not None and frontend_count < 0:
        reader.add(
            "frontendCount", f"must not be negative, got {frontend_count}", count_fix
        )
    elif frontend_count == 0 and not control_server_wanted:
        reader.add(
            "frontendCount",
            "is 0 and controlServer is false, so the stack would be empty",
            count_fix,
        )

    return capacity or DEFAULT_CAPACITY, max(frontend_count or 0, 0)


def _read_dns(reader: _ConfigReader, region: str) -> tuple[str, str, int]:
    """Read dnsZone, domain and dnsTtl."""
    dns_zone = reader.require("dnsZone", "fleet.example.com").lower().rstrip(".")
    if dns_zone and not _is_dns_name(dns_zone):
        reader.add(
            "dnsZone",
            f"{dns_zone!r} is not a DNS zone name",
            f"pulumi config set {PROJECT}:dnsZone fleet.example.com",
        )

    domain = (
        reader.require("domain", "eu-central.fleet.example.com").lower().rstrip(".")
    )
    if domain and not _is_dns_name(domain):
        reader.add(
            "domain",
            f"{domain!r} is not a DNS name",
            f"pulumi config set {PROJECT}:domain eu-central.fleet.example.com",
        )
    elif domain and dns_zone and not _is_within(domain, dns_zone):
        reader.add(
            "domain",
            f"{domain} is outside dnsZone {dns_zone}, so its records could not be created",
            f"pulumi config set {PROJECT}:domain {region or 'eu-central'}.{dns_zone} "
            f"(or set {PROJECT}:dnsZone to a zone that contains {domain})",
        )

    dns_ttl = reader.integer("dnsTtl", DEFAULT_DNS_TTL)
    if dns_ttl is not None and not 60 <= dns_ttl <= 86400:
        reader.add(
            "dnsTtl",
            f"must be between 60 and 86400 seconds, got {dns_ttl}",
            f"pulumi config set {PROJECT}:dnsTtl {DEFAULT_DNS_TTL}",
        )

    return dns_zone, domain, dns_ttl or DEFAULT_DNS_TTL


def _read_admin_cidrs(reader: _ConfigReader) -> tuple[str, ...]:
    """Read `adminCidrs` and reject any list that would open SSH to everyone."""
    fix = (
        f"pulumi config set --path '{PROJECT}:adminCidrs[0]' 198.51.100.7/32 "
        "(the public address of your office or VPN, never 0.0.0.0/0 or ::/0)"
    )
    raw = reader.text("adminCidrs")
    if raw is None:
        reader.add("adminCidrs", "is missing, so nobody could reach SSH", fix)
        return ()

    try:
        values = json.loads(raw)
    except json.JSONDecodeError:
        values = [raw]
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list) or not values:
        reader.add("adminCidrs", f"must be a non-empty list of CIDRs, got {raw!r}", fix)
        return ()

    networks = []
    for value in values:
        try:
            network = ipaddress.ip_network(str(value), strict=True)
        except ValueError as error:
            reader.add("adminCidrs", f"{value!r} is not a valid CIDR ({error})", fix)
            continue
        if network.prefixlen == 0:
            reader.add("adminCidrs", f"{value} opens SSH to everyone", fix)
            continue
        networks.append(network)

    # Several wide networks can cover a whole address family between them (0.0.0.0/1 + 128.0.0.0/1).
    for version, everyone in (
        (4, ipaddress.ip_network("0.0.0.0/0")),
        (6, ipaddress.ip_network("::/0")),
    ):
        family = [network for network in networks if network.version == version]
        if everyone in list(ipaddress.collapse_addresses(family)):
            reader.add(
                "adminCidrs",
                f"together the IPv{version} entries open SSH to everyone",
                fix,
            )

    return tuple(str(network) for network in networks)


def _read_login(reader: _ConfigReader) -> tuple[str, str]:
    """Read sshPublicKey and adminUser."""
    key_fix = f'pulumi config set {PROJECT}:sshPublicKey "$(cat ~/.ssh/id_ed25519.pub)"'
    ssh_public_key = reader.text("sshPublicKey") or ""
    if not ssh_public_key:
        reader.add("sshPublicKey", "is missing", key_fix)
    elif "PRIVATE KEY" in ssh_public_key:
        # The value never reaches the message because it is a private key.
        reader.add("sshPublicKey", "contains a private key, not a public key", key_fix)
        ssh_public_key = ""
    elif not _SSH_PUBLIC_KEY.match(ssh_public_key):
        reader.add("sshPublicKey", "is not a single OpenSSH public key line", key_fix)
        ssh_public_key = ""

    admin_user = reader.text("adminUser") or DEFAULT_ADMIN_USER
    if not _USER_NAME.match(admin_user) or admin_user == "root":
        reader.add(
            "adminUser",
            f"{admin_user!r} must be a login name other than root (lowercase, at most 32 characters)",
            f"pulumi config set {PROJECT}:adminUser {DEFAULT_ADMIN_USER}",
        )

    return ssh_public_key, admin_user


def _fits_hcloud_label(value: str) -> bool:
    """Return whether Hetzner accepts `value` as a label value (63 characters at most)."""
    return len(value) <= 63 and bool(_HCLOUD_LABEL_VALUE.match(value))


def _read_control_server(
    reader: _ConfigReader, provider: str, server_type: str, dns_zone: str
) -> ControlServerPlan:
    """Read the controlServer* keys of the stack that contains the control server."""
    name = reader.text("controlServerName") or DEFAULT_CONTROL_SERVER_NAME
    if not _NAME.match(name):
        reader.add(
            "controlServerName",
            f"{name!r} must be lowercase letters, digits and inner hyphens",
            f"pulumi config set {PROJECT}:controlServerName {DEFAULT_CONTROL_SERVER_NAME}",
        )

    control_type = reader.text("controlServerType") or server_type
    if control_type and provider and not _is_server_type(provider, control_type):
        reader.add(
            "controlServerType",
            f"{control_type!r} is not a {provider} server type",
            f"pulumi config rm {PROJECT}:controlServerType (to use serverType)",
        )

    port = reader.integer("controlServerPort", DEFAULT_CONTROL_SERVER_PORT)
    if port is not None and (not 1 <= port <= 65535 or port == 22):
        reader.add(
            "controlServerPort",
            f"must be a TCP port from 1 to 65535 other than 22, got {port}",
            f"pulumi config set {PROJECT}:controlServerPort {DEFAULT_CONTROL_SERVER_PORT}",
        )

    domain = (
        (reader.text("controlServerDomain") or f"control.{dns_zone}")
        .lower()
        .rstrip(".")
    )
    domain_fix = f"pulumi config set {PROJECT}:controlServerDomain control.{dns_zone}"
    if dns_zone and not (_is_dns_name(domain) and _is_within(domain, dns_zone)):
        reader.add(
            "controlServerDomain",
            f"{domain!r} is not a DNS name inside dnsZone {dns_zone}",
            domain_fix,
        )
    elif provider == "hcloud" and not _fits_hcloud_label(domain):
        reader.add(
            "controlServerDomain",
            f"{domain} is longer than the 63 characters of an hcloud label value",
            domain_fix,
        )

    return ControlServerPlan(
        name=name,
        server_type=control_type,
        port=port or DEFAULT_CONTROL_SERVER_PORT,
        domain=domain,
    )


def parse_stack_config(
    stack: str,
    raw: Mapping[str, Optional[str]],
    plaintext_credentials: tuple[str, ...] = (),
) -> StackConfig:
    """Validate raw `printer-fleet:<key>` strings and return the stack's configuration.

    Raises ConfigError that lists every problem. Nothing is created before this returns.
    """
    reader = _ConfigReader(raw)

    for key in raw:
        if key not in KNOWN_KEYS:
            reader.add(
                key,
                "is not a key this program reads",
                f"pulumi config rm {PROJECT}:{key}",
            )
    for key in plaintext_credentials:
        reader.add(
            key,
            "is stored in plain text in the stack file",
            f"pulumi config set --secret {key} <value> (or export it in the environment instead)",
        )

    fleet_name, provider, region, location, server_type = _read_placement(reader)
    control_server_wanted = reader.boolean("controlServer")
    capacity, frontend_count = _read_sizes(reader, control_server_wanted)
    dns_zone, domain, dns_ttl = _read_dns(reader, region)
    admin_cidrs = _read_admin_cidrs(reader)
    ssh_public_key, admin_user = _read_login(reader)

    frontends = (
        plan_frontends(region, domain, frontend_count) if region and domain else ()
    )

    # The live inventory reads each frontend's share domain back from its hcloud labels.
    long_domains = [
        plan for plan in frontends if not _fits_hcloud_label(plan.share_domain)
    ]
    if provider == "hcloud" and long_domains:
        reader.add(
            "domain",
            f"the share domain {long_domains[0].share_domain} of frontend {long_domains[0].name} is "
            "longer than the 63 characters of an hcloud label value",
            f"pulumi config set {PROJECT}:domain <a shorter name inside the dnsZone>",
        )

    control_server = None
    if control_server_wanted:
        control_server = _read_control_server(reader, provider, server_type, dns_zone)

    if reader.problems:
        raise ConfigError(stack, reader.problems)

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
        ssh_key_name=reader.text("sshKeyName"),
        admin_user=admin_user,
        fleet_name=fleet_name,
        dns_ttl=dns_ttl,
        control_server=control_server,
        frontends=frontends,
    )


def load_stack_config() -> StackConfig:
    """Read the running stack's configuration through the Pulumi SDK and validate it."""
    raw: dict[str, Optional[str]] = {}
    prefix = f"{PROJECT}:"
    # The SDK offers no public listing of config keys. Listing them lets unknown keys (typos) fail.
    present = set(runtime_config.CONFIG.get()) | set(pulumi.runtime.get_config_env())
    for full_key in sorted(present):
        if full_key.startswith(prefix):
            raw[full_key[len(prefix) :]] = pulumi.runtime.get_config(full_key)

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
