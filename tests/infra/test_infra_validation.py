"""Stack configuration errors: each names its key and the fix, and stops the program before any resource."""

from __future__ import annotations

import pytest

from infra.config import ConfigError, parse_stack_config
from infra_mocks import FleetMocks, base_config, run_program

PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----"

# (case, config overrides, key named in the error, words the error must contain)
INVALID_CONFIGS = [
    (
        "unknown provider",
        {"provider": "digitalocean"},
        "provider",
        "unknown provider 'digitalocean'",
    ),
    ("missing provider", {"provider": None}, "provider", "is missing"),
    (
        "unknown hcloud location",
        {"location": "us-east-1"},
        "location",
        "unknown hcloud location 'us-east-1'",
    ),
    (
        "unknown aws region",
        {"provider": "aws", "location": "fsn1", "serverType": "t3.small"},
        "location",
        "unknown aws location 'fsn1'",
    ),
    ("capacity zero", {"capacity": 0}, "capacity", "must be at least 1, got 0"),
    ("capacity negative", {"capacity": -5}, "capacity", "must be at least 1, got -5"),
    (
        "capacity not a number",
        {"capacity": "lots"},
        "capacity",
        "must be a whole number",
    ),
    (
        "admin cidr ipv4 world",
        {"adminCidrs": ["0.0.0.0/0"]},
        "adminCidrs",
        "0.0.0.0/0 opens SSH to everyone",
    ),
    (
        "admin cidr ipv6 world",
        {"adminCidrs": ["198.51.100.0/28", "::/0"]},
        "adminCidrs",
        "::/0 opens SSH to everyone",
    ),
    (
        "admin cidrs cover ipv4",
        {"adminCidrs": ["0.0.0.0/1", "128.0.0.0/1"]},
        "adminCidrs",
        "IPv4 entries open SSH to everyone",
    ),
    (
        "admin cidrs cover ipv6",
        {"adminCidrs": ["::/1", "8000::/1"]},
        "adminCidrs",
        "IPv6 entries open SSH to everyone",
    ),
    (
        "admin cidr invalid",
        {"adminCidrs": ["198.51.100.300/32"]},
        "adminCidrs",
        "is not a valid CIDR",
    ),
    (
        "admin cidr host bits",
        {"adminCidrs": ["198.51.100.7/24"]},
        "adminCidrs",
        "has host bits set",
    ),
    ("admin cidrs missing", {"adminCidrs": None}, "adminCidrs", "is missing"),
    ("admin cidrs empty", {"adminCidrs": []}, "adminCidrs", "must be a non-empty list"),
    (
        "domain outside zone",
        {"domain": "eu.printers.example.org"},
        "domain",
        "is outside dnsZone fleet.example.com",
    ),
    (
        "domain lookalike zone",
        {"domain": "eu.notfleet.example.com"},
        "domain",
        "is outside dnsZone",
    ),
    (
        "domain invalid",
        {"domain": "eu_central!.fleet.example.com"},
        "domain",
        "is not a DNS name",
    ),
    ("dns zone invalid", {"dnsZone": "localhost"}, "dnsZone", "is not a DNS zone name"),
    ("region invalid", {"region": "EU Central"}, "region", "must be lowercase letters"),
    (
        "server type invalid",
        {"serverType": "large"},
        "serverType",
        "is not a hcloud server type",
    ),
    (
        "aws instance type invalid",
        {"provider": "aws", "location": "us-east-1", "serverType": "cx23"},
        "serverType",
        "is not a aws server type",
    ),
    ("ssh key missing", {"sshPublicKey": None}, "sshPublicKey", "is missing"),
    (
        "ssh key malformed",
        {"sshPublicKey": "not-a-key"},
        "sshPublicKey",
        "is not a single OpenSSH public key line",
    ),
    (
        "ssh private key",
        {"sshPublicKey": PRIVATE_KEY},
        "sshPublicKey",
        "contains a private key",
    ),
    (
        "frontend count negative",
        {"frontendCount": -1},
        "frontendCount",
        "must not be negative",
    ),
    (
        "frontend count zero",
        {"frontendCount": 0},
        "frontendCount",
        "the stack would be empty",
    ),
    ("unknown key", {"capcity": 150}, "capcity", "is not a key this program reads"),
    ("admin user root", {"adminUser": "root"}, "adminUser", "other than root"),
    ("dns ttl too short", {"dnsTtl": 5}, "dnsTtl", "between 60 and 86400"),
    (
        "control server flag",
        {"controlServer": "maybe"},
        "controlServer",
        "must be true or false",
    ),
    (
        "control port ssh",
        {"controlServer": True, "controlServerPort": 22},
        "controlServerPort",
        "other than 22, got 22",
    ),
    (
        "control domain outside zone",
        {"controlServer": True, "controlServerDomain": "control.example.org"},
        "controlServerDomain",
        "inside dnsZone",
    ),
    (
        "control name invalid",
        {"controlServer": True, "controlServerName": "Control_1"},
        "controlServerName",
        "lowercase",
    ),
    (
        "share domain too long for label",
        {
            "region": "r",
            "domain": "a-very-long-share-domain-name-for-the-region.fleet.example.com",
        },
        "domain",
        "63 characters of an hcloud label value",
    ),
]


@pytest.mark.parametrize(
    "overrides, key, words",
    [case[1:] for case in INVALID_CONFIGS],
    ids=[case[0] for case in INVALID_CONFIGS],
)
def test_invalid_config_rejected(overrides, key, words):
    with pytest.raises(ConfigError) as raised:
        run_program("validation", base_config(**overrides))

    message = str(raised.value)
    problem_lines = [
        line
        for line in message.splitlines()
        if line.startswith(f"  - printer-fleet:{key}:")
    ]
    assert problem_lines, message
    assert any(words in line for line in problem_lines), message
    assert all(" Fix: " in line for line in problem_lines), message


@pytest.mark.parametrize(
    "overrides",
    [case[1] for case in INVALID_CONFIGS],
    ids=[case[0] for case in INVALID_CONFIGS],
)
def test_invalid_config_creates_nothing(overrides):
    mocks = FleetMocks()

    with pytest.raises(ConfigError):
        run_program("validation", base_config(**overrides), mocks=mocks)

    assert mocks.resources == []
    assert mocks.calls == []


def test_private_key_never_echoed():
    with pytest.raises(ConfigError) as raised:
        run_program("validation", base_config(sshPublicKey=PRIVATE_KEY))

    assert "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ" not in str(raised.value)


def test_every_problem_reported_at_once():
    with pytest.raises(ConfigError) as raised:
        run_program(
            "validation",
            base_config(capacity=0, adminCidrs=["0.0.0.0/0"], domain="eu.example.org"),
        )

    keys = sorted(problem.key for problem in raised.value.problems)
    assert keys == ["adminCidrs", "capacity", "domain"]
    assert "invalid configuration of stack 'validation' (3 problem(s))" in str(
        raised.value
    )


def test_plaintext_provider_token_rejected():
    config = base_config()
    config["hcloud:token"] = "plain-token-value"

    with pytest.raises(ConfigError) as raised:
        run_program("validation", config)

    message = str(raised.value)
    assert "hcloud:token: is stored in plain text" in message
    assert "pulumi config set --secret hcloud:token" in message
    assert "plain-token-value" not in message


def test_secret_provider_token_accepted():
    config = base_config()
    config["hcloud:token"] = "secret-token-value"

    exports, mocks = run_program("validation", config, secret_keys=("hcloud:token",))

    assert [frontend["name"] for frontend in exports["frontends"]] == ["eu-central-1"]
    assert "secret-token-value" not in repr(exports)


def test_domain_equal_to_zone_accepted():
    exports, _ = run_program("validation", base_config(domain="fleet.example.com"))

    assert exports["frontends"][0]["domain"] == "eu-central-1.fleet.example.com"


def test_admin_cidr_single_string_accepted():
    exports, mocks = run_program("validation", base_config(adminCidrs="203.0.113.9/32"))

    (firewall,) = mocks.of_type("hcloud:index/firewall:Firewall")
    ssh_rules = [rule for rule in firewall.inputs["rules"] if rule["port"] == "22"]
    assert [rule["sourceIps"] for rule in ssh_rules] == [["203.0.113.9/32"]]


def test_control_server_only_stack():
    exports, mocks = run_program(
        "validation", base_config(frontendCount=0, controlServer=True)
    )

    assert exports["frontends"] == []
    assert exports["control_server"]["name"] == "control-1"
    assert len(mocks.of_type("hcloud:index/server:Server")) == 1


def test_defaults_applied():
    raw = {
        key.split(":", 1)[1]: value
        for key, value in base_config(frontendCount=None).items()
    }

    config = parse_stack_config("defaults", raw)

    assert config.capacity == 150
    assert config.frontend_count == 1
    assert config.admin_user == "ansible"
    assert config.dns_ttl == 300
    assert config.control_server is None


def test_fleet_name_in_labels_and_key():
    _, mocks = run_program("validation", base_config(fleetName="lab-fleet"))

    (key,) = mocks.of_type("hcloud:index/sshKey:SshKey")
    assert key.inputs["name"] == "lab-fleet-eu-central-admin"
    for resource in mocks.resources:
        if resource.typ.startswith("hcloud:"):
            assert resource.inputs["labels"]["fleet"] == "lab-fleet"


def test_aws_existing_key_pair_reused():
    config = base_config(
        provider="aws", location="eu-west-1", serverType="t3.small", sshKeyName="ops-key"
    )

    _, mocks = run_program("validation", config)

    assert mocks.of_type("aws:ec2/keyPair:KeyPair") == []
    (instance,) = mocks.of_type("aws:ec2/instance:Instance")
    assert instance.inputs["keyName"] == "ops-key"
    assert instance.inputs["region"] == "eu-west-1"


def test_dns_ttl_applied():
    _, mocks = run_program("validation", base_config(dnsTtl=3600))

    records = mocks.of_type("hcloud:index/zoneRrset:ZoneRrset")
    assert len(records) == 4
    assert {record.inputs["ttl"] for record in records} == {3600}
