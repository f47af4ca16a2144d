"""The whole Pulumi program under mocks, once per example stack: resources, rules, DNS, exports."""

from __future__ import annotations

import ipaddress

import pytest
import yaml

from infra_mocks import EXAMPLE_STACKS, FleetMocks, aws_security_group_id, mock_id

WORLD = ["0.0.0.0/0", "::/0"]
EU_ADMIN = ["198.51.100.0/28", "2001:db8:100::/48"]
US_ADMIN = ["198.51.100.0/28"]
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBpxaPoIxs89HXan178hrkppnnbbAbNzliwegzAwa55j operator@example.com"

HCLOUD_SERVER = "hcloud:index/server:Server"
HCLOUD_FIREWALL = "hcloud:index/firewall:Firewall"
HCLOUD_PRIMARY_IP = "hcloud:index/primaryIp:PrimaryIp"
HCLOUD_RRSET = "hcloud:index/zoneRrset:ZoneRrset"
HCLOUD_SSH_KEY = "hcloud:index/sshKey:SshKey"
AWS_INSTANCE = "aws:ec2/instance:Instance"
AWS_SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
AWS_EIP = "aws:ec2/eip:Eip"
AWS_RECORD = "aws:route53/record:Record"
AWS_KEY_PAIR = "aws:ec2/keyPair:KeyPair"

FRONTEND_TYPE = "printer-fleet:frontend:ZrokFrontend"
CONTROL_TYPE = "printer-fleet:control:ControlServerHost"
ACCESS_TYPE = "printer-fleet:access:AdminSshKey"

# What each example stack must create: hosts with their location and type.
EXPECTED_HOSTS = {
    "eu-central": {
        "eu-central-1": ("fsn1", "cx23"),
        "eu-central-2": ("fsn1", "cx23"),
        "control-1": ("fsn1", "cx33"),
    },
    "us-east": {
        "us-east-1": ("us-east-1", "t3.small"),
        "us-east-2": ("us-east-1", "t3.small"),
    },
    "ap-southeast": {
        "ap-southeast-1": ("sin", "cpx21"),
    },
}

EXPECTED_FRONTENDS = {
    "eu-central": [
        (
            "eu-central-1",
            "hcloud",
            "eu-central",
            "fsn1",
            "eu-central-1.eu-central.fleet.example.com",
            150,
        ),
        (
            "eu-central-2",
            "hcloud",
            "eu-central",
            "fsn1",
            "eu-central-2.eu-central.fleet.example.com",
            150,
        ),
    ],
    "us-east": [
        (
            "us-east-1",
            "aws",
            "us-east",
            "us-east-1",
            "us-east-1.us-east.aws.fleet.example.com",
            150,
        ),
        (
            "us-east-2",
            "aws",
            "us-east",
            "us-east-1",
            "us-east-2.us-east.aws.fleet.example.com",
            150,
        ),
    ],
    "ap-southeast": [
        (
            "ap-southeast-1",
            "hcloud",
            "ap-southeast",
            "sin",
            "ap-southeast-1.ap-southeast.fleet.example.com",
            100,
        ),
    ],
}


def hcloud_rules(firewall) -> list[tuple[str, str, str, list[str]]]:
    return sorted(
        (rule["direction"], rule["protocol"], rule["port"], sorted(rule["sourceIps"]))
        for rule in firewall.inputs["rules"]
    )


def aws_rules(security_group) -> list[tuple[str, int, int, list[str], list[str]]]:
    return sorted(
        (
            rule["protocol"],
            rule["fromPort"],
            rule["toPort"],
            sorted(rule.get("cidrBlocks", [])),
            sorted(rule.get("ipv6CidrBlocks", [])),
        )
        for rule in security_group.inputs["ingress"]
    )


def children_of(mocks: FleetMocks, component_name: str, component_type: str):
    component = [
        r
        for r in mocks.resources
        if r.name == component_name and r.typ == component_type
    ]
    assert len(component) == 1
    return [r for r in mocks.resources if r.parent == component[0].urn]


# --- servers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_servers_count_location_type(example_runs, stack):
    exports, mocks = example_runs[stack]
    expected = EXPECTED_HOSTS[stack]

    if exports["provider"] == "hcloud":
        servers = {
            s.inputs["name"]: (s.inputs["location"], s.inputs["serverType"])
            for s in mocks.of_type(HCLOUD_SERVER)
        }
        assert len(mocks.of_type(HCLOUD_SERVER)) == len(expected)
        assert all(
            s.inputs["image"] == "debian-12" for s in mocks.of_type(HCLOUD_SERVER)
        )
    else:
        instances = mocks.of_type(AWS_INSTANCE)
        servers = {
            i.inputs["tags"]["Name"]: (i.inputs["region"], i.inputs["instanceType"])
            for i in instances
        }
        assert len(instances) == len(expected)
        assert all(i.inputs["ami"] == "ami-0d3b1e2a4c5f60718" for i in instances)

    assert servers == expected


def test_aws_instances_use_debian_ami(example_runs):
    _, mocks = example_runs["us-east"]
    ami_calls = [
        args for token, args in mocks.calls if token == "aws:ec2/getAmi:getAmi"
    ]

    assert len(ami_calls) == 2
    for args in ami_calls:
        assert args["owners"] == ["136693071363"]
        assert args["mostRecent"] is True
        assert {"name": "name", "values": ["debian-12-amd64-*"]} in args["filters"]
        assert args["region"] == "us-east-1"


def test_aws_instances_hardened(example_runs):
    _, mocks = example_runs["us-east"]

    for instance in mocks.of_type(AWS_INSTANCE):
        assert instance.inputs["metadataOptions"]["httpTokens"] == "required"
        assert instance.inputs["rootBlockDevice"]["encrypted"] is True
        assert instance.inputs["keyName"] == "printer-fleet-us-east-admin"


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_first_boot_inputs_never_replace(example_runs, stack):
    _, mocks = example_runs[stack]

    for server in mocks.of_type(HCLOUD_SERVER):
        assert sorted(server.ignore_changes) == ["sshKeys", "userData"]
    for instance in mocks.of_type(AWS_INSTANCE):
        assert sorted(instance.ignore_changes) == ["ami", "keyName", "userData"]


# --- firewall ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stack, frontend, admin",
    [
        ("eu-central", "eu-central-1", EU_ADMIN),
        ("eu-central", "eu-central-2", EU_ADMIN),
        ("ap-southeast", "ap-southeast-1", EU_ADMIN),
    ],
)
def test_hcloud_frontend_firewall_rules(example_runs, stack, frontend, admin):
    _, mocks = example_runs[stack]
    firewall = mocks.named(f"{frontend}-firewall")

    assert hcloud_rules(firewall) == sorted(
        [
            ("in", "tcp", "22", sorted(admin)),
            ("in", "tcp", "1280", WORLD),
            ("in", "tcp", "3022", WORLD),
            ("in", "tcp", "443", WORLD),
            ("in", "tcp", "80", WORLD),
        ]
    )


def test_hcloud_control_server_firewall_rules(example_runs):
    _, mocks = example_runs["eu-central"]
    firewall = mocks.named("control-1-firewall")

    assert hcloud_rules(firewall) == sorted(
        [
            ("in", "tcp", "22", sorted(EU_ADMIN)),
            ("in", "tcp", "8443", WORLD),
        ]
    )


@pytest.mark.parametrize("stack", ["eu-central", "ap-southeast"])
def test_hcloud_firewall_attached_to_server(example_runs, stack):
    _, mocks = example_runs[stack]

    for server in mocks.of_type(HCLOUD_SERVER):
        firewall = mocks.named(f"{server.inputs['name']}-firewall")
        assert server.inputs["firewallIds"] == [
            int(mock_id(firewall.typ, firewall.name))
        ]


@pytest.mark.parametrize("frontend", ["us-east-1", "us-east-2"])
def test_aws_frontend_security_group_rules(example_runs, frontend):
    _, mocks = example_runs["us-east"]
    security_group = mocks.named(f"{frontend}-security-group")

    assert aws_rules(security_group) == sorted(
        [
            ("tcp", 22, 22, US_ADMIN, []),
            ("tcp", 80, 80, ["0.0.0.0/0"], ["::/0"]),
            ("tcp", 443, 443, ["0.0.0.0/0"], ["::/0"]),
            ("tcp", 1280, 1280, ["0.0.0.0/0"], ["::/0"]),
            ("tcp", 3022, 3022, ["0.0.0.0/0"], ["::/0"]),
        ]
    )
    assert security_group.inputs["region"] == "us-east-1"


def test_aws_security_group_attached(example_runs):
    _, mocks = example_runs["us-east"]

    for instance in mocks.of_type(AWS_INSTANCE):
        name = instance.inputs["tags"]["Name"]
        security_group = mocks.named(f"{name}-security-group")
        assert instance.inputs["vpcSecurityGroupIds"] == [
            aws_security_group_id(security_group.name)
        ]


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_ssh_never_open_to_world(example_runs, stack):
    _, mocks = example_runs[stack]
    ssh_sources = []
    for firewall in mocks.of_type(HCLOUD_FIREWALL):
        ssh_sources += [
            source
            for rule in firewall.inputs["rules"]
            if rule["port"] == "22"
            for source in rule["sourceIps"]
        ]
    for security_group in mocks.of_type(AWS_SECURITY_GROUP):
        for rule in security_group.inputs["ingress"]:
            if rule["fromPort"] <= 22 <= rule["toPort"]:
                ssh_sources += rule.get("cidrBlocks", []) + rule.get(
                    "ipv6CidrBlocks", []
                )

    assert ssh_sources
    for source in ssh_sources:
        assert ipaddress.ip_network(source).prefixlen > 0


# --- stable IPs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["eu-central", "ap-southeast"])
def test_hcloud_primary_ips_outlive_server(example_runs, stack):
    _, mocks = example_runs[stack]

    for server in mocks.of_type(HCLOUD_SERVER):
        name = server.inputs["name"]
        ipv4 = mocks.named(f"{name}-ipv4")
        ipv6 = mocks.named(f"{name}-ipv6")
        assert ipv4.inputs["autoDelete"] is False
        assert ipv6.inputs["autoDelete"] is False
        assert ipv4.inputs["location"] == server.inputs["location"]
        assert ipv4.inputs["type"] == "ipv4"
        assert ipv6.inputs["type"] == "ipv6"

        public_net = server.inputs["publicNets"][0]
        assert public_net["ipv4Enabled"] is True
        assert public_net["ipv6Enabled"] is True
        assert public_net["ipv4"] == int(mock_id(ipv4.typ, ipv4.name))
        assert public_net["ipv6"] == int(mock_id(ipv6.typ, ipv6.name))


def test_aws_elastic_ip_per_instance(example_runs):
    exports, mocks = example_runs["us-east"]

    eips = mocks.of_type(AWS_EIP)
    assert len(eips) == 2
    for eip in eips:
        assert eip.inputs["domain"] == "vpc"
        assert eip.inputs["instance"].startswith("i-")
    assert sorted(e.outputs["publicIp"] for e in eips) == sorted(
        f["ipv4"] for f in exports["frontends"]
    )


# --- DNS -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["eu-central", "ap-southeast"])
def test_hcloud_dns_records(example_runs, stack):
    exports, mocks = example_runs[stack]
    records = {
        (r.inputs["name"], r.inputs["type"]): (
            r.inputs["zone"],
            r.inputs["ttl"],
            [v["value"] for v in r.inputs["records"]],
        )
        for r in mocks.of_type(HCLOUD_RRSET)
    }

    expected = {}
    for frontend in exports["frontends"]:
        relative = frontend["domain"].removesuffix(".fleet.example.com")
        for prefix in ("api", "*"):
            expected[(f"{prefix}.{relative}", "A")] = (
                "fleet.example.com",
                300,
                [frontend["ipv4"]],
            )
            expected[(f"{prefix}.{relative}", "AAAA")] = (
                "fleet.example.com",
                300,
                [frontend["ipv6"]],
            )
    if "control_server" in exports:
        control = exports["control_server"]
        expected[("control", "A")] = ("fleet.example.com", 300, [control["ipv4"]])
        expected[("control", "AAAA")] = ("fleet.example.com", 300, [control["ipv6"]])

    assert records == expected


def test_hcloud_dns_names_match_exports(example_runs):
    exports, mocks = example_runs["eu-central"]
    names = {
        r.inputs["name"] + ".fleet.example.com" for r in mocks.of_type(HCLOUD_RRSET)
    }

    for frontend in exports["frontends"]:
        api_host = frontend["api_endpoint"].removeprefix("https://")
        assert api_host in names
        assert api_host == f"api.{frontend['domain']}"
        assert f"*.{frontend['domain']}" in names


def test_route53_records(example_runs):
    exports, mocks = example_runs["us-east"]
    records = {
        (r.inputs["name"], r.inputs["type"]): (
            r.inputs["zoneId"],
            r.inputs["ttl"],
            r.inputs["records"],
        )
        for r in mocks.of_type(AWS_RECORD)
    }

    expected = {}
    for frontend in exports["frontends"]:
        expected[(f"api.{frontend['domain']}", "A")] = (
            "Z0FLEETZONE",
            300,
            [frontend["ipv4"]],
        )
        expected[(f"*.{frontend['domain']}", "A")] = (
            "Z0FLEETZONE",
            300,
            [frontend["ipv4"]],
        )
    assert records == expected

    zone_calls = [
        args for token, args in mocks.calls if token == "aws:route53/getZone:getZone"
    ]
    assert zone_calls
    assert all(
        args["name"] == "aws.fleet.example.com" and args["privateZone"] is False
        for args in zone_calls
    )


# --- labels and tags -----------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["eu-central", "ap-southeast"])
def test_hcloud_labels_on_every_resource(example_runs, stack):
    exports, mocks = example_runs[stack]
    hcloud_resources = [r for r in mocks.resources if r.typ.startswith("hcloud:")]

    assert hcloud_resources
    for resource in hcloud_resources:
        labels = resource.inputs.get("labels")
        assert labels is not None, f"{resource.name} has no labels"
        assert labels["fleet"] == "printer-fleet"
        assert labels["region"] == exports["region"]
        assert labels["role"] in ("zrok-frontend", "control-server", "admin-access")


def test_hcloud_frontend_server_labels(example_runs):
    _, mocks = example_runs["eu-central"]

    assert mocks.named("eu-central-2-server").inputs["labels"] == {
        "fleet": "printer-fleet",
        "role": "zrok-frontend",
        "region": "eu-central",
        "frontend": "eu-central-2",
        "capacity": "150",
        "share-domain": "eu-central-2.eu-central.fleet.example.com",
        "admin-user": "ansible",
    }
    assert mocks.named("control-1-server").inputs["labels"] == {
        "fleet": "printer-fleet",
        "role": "control-server",
        "region": "eu-central",
        "domain": "control.fleet.example.com",
        "port": "8443",
        "admin-user": "ansible",
    }


def test_aws_tags_on_every_taggable_resource(example_runs):
    _, mocks = example_runs["us-east"]
    taggable = [
        r
        for r in mocks.resources
        if r.typ in (AWS_INSTANCE, AWS_SECURITY_GROUP, AWS_EIP, AWS_KEY_PAIR)
    ]

    assert len(taggable) == 7
    for resource in taggable:
        tags = resource.inputs["tags"]
        assert tags["fleet"] == "printer-fleet"
        assert tags["region"] == "us-east"
        assert tags["role"] in ("zrok-frontend", "admin-access")
        assert "Name" in tags
    for instance in mocks.of_type(AWS_INSTANCE):
        assert instance.inputs["volumeTags"] == instance.inputs["tags"]


# --- SSH key -------------------------------------------------------------------------------------


def test_hcloud_ssh_key_uploaded_once(example_runs):
    _, mocks = example_runs["eu-central"]
    keys = mocks.of_type(HCLOUD_SSH_KEY)

    assert len(keys) == 1
    assert keys[0].inputs["publicKey"] == SSH_KEY
    for server in mocks.of_type(HCLOUD_SERVER):
        assert server.inputs["sshKeys"] == [mock_id(keys[0].typ, keys[0].name)]


def test_hcloud_existing_ssh_key_reused(example_runs):
    _, mocks = example_runs["ap-southeast"]

    assert mocks.of_type(HCLOUD_SSH_KEY) == []
    assert mocks.named("ap-southeast-1-server").inputs["sshKeys"] == [
        "printer-fleet-eu-central-admin"
    ]


# --- cloud-init ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_cloud_init_prepares_for_ansible(example_runs, stack):
    _, mocks = example_runs[stack]
    hosts = [
        (s.inputs["name"], s.inputs["userData"]) for s in mocks.of_type(HCLOUD_SERVER)
    ]
    hosts += [
        (i.inputs["tags"]["Name"], i.inputs["userData"])
        for i in mocks.of_type(AWS_INSTANCE)
    ]

    assert hosts
    for hostname, user_data in hosts:
        assert user_data.startswith("#cloud-config\n")
        cloud_config = yaml.safe_load(user_data)
        assert cloud_config["hostname"] == hostname
        assert cloud_config["ssh_pwauth"] is False
        assert cloud_config["disable_root"] is True
        assert {"python3", "python3-apt", "sudo"} <= set(cloud_config["packages"])

        (user,) = cloud_config["users"]
        assert user["name"] == "ansible"
        assert user["ssh_authorized_keys"] == [SSH_KEY]
        assert user["lock_passwd"] is True
        assert user["sudo"] == "ALL=(ALL) NOPASSWD:ALL"

        (sshd,) = cloud_config["write_files"]
        assert "PasswordAuthentication no" in sshd["content"].splitlines()
        assert "PermitRootLogin no" in sshd["content"].splitlines()


def test_cloud_init_fqdn_is_api_name(example_runs):
    _, mocks = example_runs["eu-central"]

    frontend = yaml.safe_load(mocks.named("eu-central-1-server").inputs["userData"])
    control = yaml.safe_load(mocks.named("control-1-server").inputs["userData"])
    assert frontend["fqdn"] == "api.eu-central-1.eu-central.fleet.example.com"
    assert control["fqdn"] == "control.fleet.example.com"


# --- components ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_components_parent_their_children(example_runs, stack):
    exports, mocks = example_runs[stack]

    for frontend in exports["frontends"]:
        children = children_of(mocks, frontend["name"], FRONTEND_TYPE)
        assert len(children) >= 5
        assert all(child.name.startswith(f"{frontend['name']}-") for child in children)

    component_types = (FRONTEND_TYPE, CONTROL_TYPE, ACCESS_TYPE)
    components = [r for r in mocks.resources if r.typ in component_types]
    custom = [r for r in mocks.resources if r.typ not in component_types]
    component_urns = {c.urn for c in components}
    assert all(resource.parent in component_urns for resource in custom)
    assert component_urns <= mocks.registered_outputs


def test_control_server_component(example_runs):
    _, mocks = example_runs["eu-central"]
    children = children_of(mocks, "control-1", CONTROL_TYPE)

    assert sorted(child.typ for child in children) == sorted(
        [
            HCLOUD_FIREWALL,
            HCLOUD_PRIMARY_IP,
            HCLOUD_PRIMARY_IP,
            HCLOUD_SERVER,
            HCLOUD_RRSET,
            HCLOUD_RRSET,
        ]
    )


# --- exports -------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_frontends_export(example_runs, stack):
    exports, _ = example_runs[stack]

    summary = [
        (
            f["name"],
            f["provider"],
            f["region"],
            f["location"],
            f["domain"],
            f["capacity"],
        )
        for f in exports["frontends"]
    ]
    assert summary == EXPECTED_FRONTENDS[stack]
    for frontend in exports["frontends"]:
        assert set(frontend) == {
            "name",
            "provider",
            "region",
            "location",
            "ipv4",
            "ipv6",
            "api_endpoint",
            "domain",
            "capacity",
        }
        assert frontend["api_endpoint"] == f"https://api.{frontend['domain']}"
        assert ipaddress.ip_address(frontend["ipv4"]).version == 4
        if frontend["provider"] == "hcloud":
            assert ipaddress.ip_address(frontend["ipv6"]).version == 6
        else:
            assert frontend["ipv6"] is None


def test_frontend_ipv4_is_primary_ip(example_runs):
    exports, mocks = example_runs["eu-central"]

    for frontend in exports["frontends"]:
        assert (
            frontend["ipv4"]
            == mocks.named(f"{frontend['name']}-ipv4").outputs["ipAddress"]
        )
        assert (
            frontend["ipv6"]
            == mocks.named(f"{frontend['name']}-server").outputs["ipv6Address"]
        )


def test_control_server_export(example_runs):
    exports, mocks = example_runs["eu-central"]

    control = exports["control_server"]
    assert control["name"] == "control-1"
    assert control["url"] == "https://control.fleet.example.com:8443"
    assert control["location"] == "fsn1"
    assert control["ipv4"] == mocks.named("control-1-ipv4").outputs["ipAddress"]


@pytest.mark.parametrize("stack", ["us-east", "ap-southeast"])
def test_no_control_server_export(example_runs, stack):
    exports, _ = example_runs[stack]

    assert "control_server" not in exports


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_stack_exports_no_secret(example_runs, stack):
    exports, _ = example_runs[stack]

    assert exports["admin_user"] == "ansible"
    assert "PRIVATE KEY" not in repr(exports)
    assert "token" not in repr(exports).lower()
