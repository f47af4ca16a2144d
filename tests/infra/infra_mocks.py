"""Pulumi mocks that behave like Hetzner Cloud and AWS, and helpers that run the program under them."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import runpy
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pulumi
from pulumi.runtime.mocks import MockMonitor
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = ROOT / "infra" / "__main__.py"
PROJECT = "printer-fleet"
DATA = Path(__file__).resolve().parent / "data"

EXAMPLE_STACKS = ("eu-central", "us-east", "ap-southeast")

# Suffixes of child resource names. The rest of the name is the host that the address belongs to.
_HOST_SUFFIXES = ("-server", "-ipv4", "-ipv6", "-instance", "-eip")


def _host_of(resource_name: str) -> str:
    for suffix in _HOST_SUFFIXES:
        if resource_name.endswith(suffix):
            return resource_name[: -len(suffix)]
    return resource_name


def mock_id(typ: str, name: str) -> str:
    """Return the id FleetMocks gives an hcloud resource: numeric, as hcloud ids are."""
    return str(_digest(f"{typ}/{name}") % 10_000_000 + 1)


def _digest(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def fake_ipv4(host: str) -> str:
    """Return a stable documentation address (203.0.113.0/24) for a host name."""
    return str(ipaddress.ip_address("203.0.113.0") + 1 + _digest(host) % 253)


def aws_security_group_id(name: str) -> str:
    return f"sg-{_digest(name):017x}"


def fake_ipv6_network(host: str) -> str:
    return f"2001:db8:{_digest(host) % 0xFFFF:x}::"


@dataclass
class RecordedResource:
    """A resource as the program registered it: resolved inputs (camelCase) and mock outputs."""

    typ: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    parent: Optional[str] = None
    urn: Optional[str] = None
    ignore_changes: tuple[str, ...] = ()


class RecordingMonitor(MockMonitor):
    """MockMonitor that also records each resource's parent, ignored changes and register_outputs call."""

    def __init__(self, mocks: "FleetMocks"):
        super().__init__(mocks)
        self.fleet_mocks = mocks

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            # Registrations run on several threads, so find the record by its unique name.
            recorded = self.fleet_mocks.named(request.name)
            recorded.parent = request.parent or None
            recorded.urn = response.urn
            recorded.ignore_changes = tuple(request.ignoreChanges)
        return response

    def RegisterResourceOutputs(self, request):
        self.fleet_mocks.registered_outputs.add(request.urn)
        return super().RegisterResourceOutputs(request)


class FleetMocks(pulumi.runtime.Mocks):
    """Return provider-like outputs for resource registrations and data-source calls, deterministically."""

    def __init__(self) -> None:
        self.resources: list[RecordedResource] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.registered_outputs: set[str] = set()

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        outputs = dict(args.inputs)
        resource_id = mock_id(args.typ, args.name)
        host = _host_of(args.name)

        if args.typ == "hcloud:index/primaryIp:PrimaryIp":
            if args.inputs.get("type") == "ipv6":
                outputs["ipAddress"] = fake_ipv6_network(host) + "/64"
            else:
                outputs["ipAddress"] = fake_ipv4(host)
        elif args.typ == "hcloud:index/server:Server":
            outputs["ipv4Address"] = fake_ipv4(host)
            outputs["ipv6Address"] = fake_ipv6_network(host) + "1"
            outputs["ipv6Network"] = fake_ipv6_network(host) + "/64"
            outputs["status"] = "running"
        elif args.typ == "aws:ec2/instance:Instance":
            resource_id = f"i-{_digest(args.name):017x}"
            outputs["publicIp"] = "192.0.2.200"
        elif args.typ == "aws:ec2/eip:Eip":
            resource_id = f"eipalloc-{_digest(args.name):017x}"
            outputs["publicIp"] = fake_ipv4(host)
        elif args.typ == "aws:ec2/securityGroup:SecurityGroup":
            resource_id = aws_security_group_id(args.name)
        elif args.typ == "aws:ec2/keyPair:KeyPair":
            outputs["keyName"] = args.inputs.get("keyName", args.name)

        self.resources.append(
            RecordedResource(args.typ, args.name, dict(args.inputs), outputs)
        )
        return resource_id, outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.calls.append((args.token, dict(args.args)))
        if args.token == "aws:ec2/getAmi:getAmi":
            return {
                "id": "ami-0d3b1e2a4c5f60718",
                "architecture": "x86_64",
                "name": "debian-12-amd64-20260101-2345",
            }
        if args.token == "aws:route53/getZone:getZone":
            return {
                "id": "Z0FLEETZONE",
                "zoneId": "Z0FLEETZONE",
                "name": args.args.get("name"),
            }
        return {}

    def of_type(self, typ: str) -> list[RecordedResource]:
        return [resource for resource in self.resources if resource.typ == typ]

    def named(self, name: str) -> RecordedResource:
        matches = [resource for resource in self.resources if resource.name == name]
        assert (
            len(matches) == 1
        ), f"expected one resource named {name}, found {len(matches)}"
        return matches[0]


def read_stack_file(stack: str) -> dict[str, str]:
    """Return a Pulumi.<stack>.yaml's config the way the engine passes it (objects as JSON)."""
    data = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    return {
        key: value if isinstance(value, str) else json.dumps(value)
        for key, value in data.items()
    }


def run_program(
    stack: str,
    config: dict[str, str],
    secret_keys: tuple[str, ...] = (),
    mocks: Optional[FleetMocks] = None,
) -> tuple[dict[str, Any], FleetMocks]:
    """Run infra/__main__.py under mocks and return the resolved stack outputs and the mocks."""
    mocks = mocks if mocks is not None else FleetMocks()
    # Pulumi's mocks create futures on the main thread's event loop. A test that ran asyncio.run()
    # earlier in the session leaves no current loop there, so give the program a fresh one.
    asyncio.set_event_loop(asyncio.new_event_loop())
    pulumi.runtime.settings.reset_options()
    pulumi.runtime.set_all_config(dict(config), list(secret_keys))
    pulumi.runtime.set_mocks(
        mocks,
        project=PROJECT,
        stack=stack,
        preview=False,
        monitor=RecordingMonitor(mocks),
    )

    exports: dict[str, Any] = {}

    @pulumi.runtime.test
    def evaluate():
        runpy.run_path(str(PROGRAM), run_name="__main__")
        outputs = pulumi.runtime.settings.get_root_resource().outputs
        return pulumi.Output.from_input(outputs).apply(exports.update)

    evaluate()
    return exports, mocks


def base_config(**overrides: Any) -> dict[str, str]:
    """Return a valid hcloud stack config. Overrides use the config key names, and None removes a key."""
    values: dict[str, Any] = {
        "provider": "hcloud",
        "region": "eu-central",
        "location": "fsn1",
        "frontendCount": 1,
        "serverType": "cx23",
        "domain": "eu-central.fleet.example.com",
        "dnsZone": "fleet.example.com",
        "adminCidrs": ["198.51.100.0/28"],
        "sshPublicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBpxaPoIxs89HXan178hrkppnnbbAbNzliwegzAwa55j op@example",
    }
    values.update(overrides)
    return {
        f"{PROJECT}:{key}": value if isinstance(value, str) else json.dumps(value)
        for key, value in values.items()
        if value is not None
    }


def record_examples() -> None:
    """Rewrite the recorded outputs and the expected inventories from the example stacks."""
    sys.path.insert(0, str(ROOT))
    from infra.inventory import StackSource, generate

    sources = []
    for stack in EXAMPLE_STACKS:
        exports, _ = run_program(stack, read_stack_file(stack))
        path = DATA / "outputs" / f"{stack}.json"
        path.write_text(json.dumps(exports, indent=2) + "\n")
        sources.append(StackSource(stack, path))
        print(f"recorded {path.relative_to(ROOT)}")

    for path, changed, _ in generate(sources, output_dir=DATA / "expected"):
        print(f"{path.relative_to(ROOT)}: {'written' if changed else 'unchanged'}")


if __name__ == "__main__":
    record_examples()
