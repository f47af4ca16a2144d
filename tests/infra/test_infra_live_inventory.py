"""The live inventories find the hosts the program creates, by label and tag, with the generated host vars.

hetzner.hcloud.hcloud reads a stand-in Hetzner API on 127.0.0.1 that serves the servers the program
registered under mocks, and amazon.aws.aws_ec2 reads instances that moto's in-process EC2 holds.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from infra.inventory import StackSource, generate
from infra_mocks import DATA, ROOT

LIVE = ROOT / "inventory" / "live"

# The host vars both kinds of inventory must agree on.
FLEET_VARS = (
    "ansible_user",
    "fleet_provider",
    "fleet_region",
    "fleet_location",
    "fleet_capacity",
    "zrok_api_endpoint",
    "zrok_share_domain",
    "fleet_control_url",
)


def read_inventory(source: Path) -> dict[str, dict[str, dict]]:
    """Return group -> host -> vars, as the control server and playbooks see them."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.plugins.loader import init_plugin_loader
    from ansible.utils.collection_loader import AnsibleCollectionConfig
    from ansible.vars.manager import VariableManager

    # Outside the ansible CLIs, collection plugins resolve only once the collection loader is set up.
    if AnsibleCollectionConfig.collection_finder is None:
        init_plugin_loader()

    manager = InventoryManager(loader=DataLoader(), sources=[str(source)])
    variables = VariableManager(loader=DataLoader(), inventory=manager)
    groups = {}
    for group in ("zrok_frontends", "control_servers"):
        if group not in manager.groups:
            continue
        groups[group] = {}
        for host in manager.groups[group].get_hosts():
            host_vars = variables.get_vars(host=host)
            groups[group][host.name] = {
                key: host_vars[key]
                for key in (*FLEET_VARS, "ansible_host")
                if key in host_vars
            }
    return groups


def generated_inventory(tmp_path: Path, stack: str) -> dict[str, dict[str, dict]]:
    generate(
        [StackSource(stack, DATA / "outputs" / f"{stack}.json")],
        output_dir=tmp_path / "generated",
    )
    return read_inventory(tmp_path / "generated" / f"{stack}.yml")


def without_address(groups: dict[str, dict[str, dict]]) -> dict[str, dict[str, dict]]:
    return {
        group: {
            host: {k: v for k, v in host_vars.items() if k != "ansible_host"}
            for host, host_vars in hosts.items()
        }
        for group, hosts in groups.items()
    }


# --- Hetzner Cloud -------------------------------------------------------------------------------


def hetzner_server(server_id: int, resource) -> dict:
    """Return a server object of the Hetzner API built from a mocked hcloud.Server registration."""
    location = resource.inputs["location"]
    return {
        "id": server_id,
        "name": resource.inputs["name"],
        "status": "running",
        "created": "2026-01-01T00:00:00+00:00",
        "public_net": {
            "ipv4": {
                "id": server_id * 10,
                "ip": resource.outputs["ipv4Address"],
                "blocked": False,
                "dns_ptr": "static.example",
            },
            "ipv6": {
                "id": server_id * 10 + 1,
                "ip": resource.outputs["ipv6Network"],
                "blocked": False,
                "dns_ptr": [],
            },
            "floating_ips": [],
            "firewalls": [],
        },
        "server_type": {
            "id": 1,
            "name": resource.inputs["serverType"],
            "description": "",
            "cores": 2,
            "memory": 4.0,
            "disk": 40,
            "prices": [],
            "storage_type": "local",
            "cpu_type": "shared",
            "architecture": "x86",
            "deprecated": False,
        },
        "datacenter": {
            "id": 1,
            "name": f"{location}-dc1",
            "description": "",
            "location": {
                "id": 1,
                "name": location,
                "description": "",
                "country": "DE",
                "city": "",
                "latitude": 50.0,
                "longitude": 12.0,
                "network_zone": "eu-central",
            },
            "server_types": {
                "supported": [],
                "available": [],
                "available_for_migration": [],
            },
        },
        "image": {
            "id": 114690387,
            "type": "system",
            "status": "available",
            "name": "debian-12",
            "description": "Debian 12",
            "image_size": None,
            "disk_size": 5,
            "created": "2023-06-13T06:00:02+00:00",
            "created_from": None,
            "bound_to": None,
            "os_flavor": "debian",
            "os_version": "12",
            "rapid_deploy": True,
            "protection": {"delete": False},
            "deprecated": None,
            "labels": {},
            "architecture": "x86",
        },
        "iso": None,
        "rescue_enabled": False,
        "locked": False,
        "backup_window": None,
        "outgoing_traffic": 0,
        "ingoing_traffic": 0,
        "included_traffic": 0,
        "protection": {"delete": False, "rebuild": False},
        "labels": resource.inputs["labels"],
        "volumes": [],
        "load_balancers": [],
        "private_net": [],
        "primary_disk_size": 40,
        "placement_group": None,
    }


class FakeHetznerApi(BaseHTTPRequestHandler):
    """Serve GET /v1/locations and GET /v1/servers with `label_selector` (key=value) filtering."""

    servers: list[dict] = []
    requests_seen: list[str] = []

    def do_GET(self):
        url = urlparse(self.path)
        query = parse_qs(url.query)
        self.requests_seen.append(self.path)

        if self.headers.get("Authorization") != "Bearer test-token":
            self.reply(
                401,
                {
                    "error": {
                        "code": "unauthorized",
                        "message": "unable to authenticate",
                    }
                },
            )
        elif url.path == "/v1/locations":
            self.reply(200, {"locations": [], "meta": self.page(0)})
        elif url.path == "/v1/servers":
            servers = self.servers
            for selector in query.get("label_selector", []):
                key, _, value = selector.partition("=")
                servers = [s for s in servers if s["labels"].get(key) == value]
            self.reply(200, {"servers": servers, "meta": self.page(len(servers))})
        else:
            self.reply(404, {"error": {"code": "not_found", "message": url.path}})

    @staticmethod
    def page(total: int) -> dict:
        return {
            "pagination": {
                "page": 1,
                "per_page": 50,
                "previous_page": None,
                "next_page": None,
                "last_page": 1,
                "total_entries": total,
            }
        }

    def reply(self, status: int, body: dict):
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def hetzner_api(example_runs):
    _, mocks = example_runs["eu-central"]
    servers = [
        hetzner_server(index, r)
        for index, r in enumerate(mocks.of_type("hcloud:index/server:Server"), 1)
    ]
    outsider = hetzner_server(99, mocks.of_type("hcloud:index/server:Server")[0])
    outsider.update(
        name="someone-elses-server",
        labels={"fleet": "another-fleet", "role": "zrok-frontend"},
    )

    FakeHetznerApi.servers = servers + [outsider]
    FakeHetznerApi.requests_seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHetznerApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("HCLOUD_TOKEN", "test-token")
        monkeypatch.setenv(
            "HCLOUD_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}/v1"
        )
        yield FakeHetznerApi
    server.shutdown()
    server.server_close()
    thread.join()


def test_hcloud_live_matches_generated(hetzner_api, tmp_path):
    live = read_inventory(LIVE / "hcloud.yml")
    generated = generated_inventory(tmp_path, "eu-central")

    assert live == generated
    assert sorted(live["zrok_frontends"]) == ["eu-central-1", "eu-central-2"]
    assert any(
        "label_selector=fleet%3Dprinter-fleet" in path
        for path in hetzner_api.requests_seen
    )


def test_hcloud_live_skips_other_fleets(hetzner_api):
    live = read_inventory(LIVE / "hcloud.yml")

    hosts = {host for group in live.values() for host in group}
    assert "someone-elses-server" not in hosts


# --- AWS -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ec2(example_runs):
    import boto3
    from moto import mock_aws

    _, mocks = example_runs["us-east"]
    with pytest.MonkeyPatch.context() as monkeypatch, mock_aws():
        for variable in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            monkeypatch.delenv(variable, raising=False)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        # moto accepts any AMI id, and skipping its built-in AMI catalogue saves seconds.
        monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")

        client = boto3.client("ec2", region_name="us-east-1")
        image_id = mocks.of_type("aws:ec2/instance:Instance")[0].inputs["ami"]
        addresses = {}
        for instance in mocks.of_type("aws:ec2/instance:Instance"):
            tags = [
                {"Key": key, "Value": value}
                for key, value in instance.inputs["tags"].items()
            ]
            created = client.run_instances(
                ImageId=image_id,
                InstanceType=instance.inputs["instanceType"],
                MinCount=1,
                MaxCount=1,
                TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
            )["Instances"][0]
            allocation = client.allocate_address(Domain="vpc")
            client.associate_address(
                InstanceId=created["InstanceId"],
                AllocationId=allocation["AllocationId"],
            )
            addresses[instance.inputs["tags"]["Name"]] = allocation["PublicIp"]

        client.run_instances(
            ImageId=image_id,
            InstanceType="t3.micro",
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": "Name", "Value": "unrelated"}],
                }
            ],
        )
        yield addresses


def test_aws_live_matches_generated(ec2, tmp_path):
    live = read_inventory(LIVE / "aws_ec2.yml")
    generated = generated_inventory(tmp_path, "us-east")

    assert without_address(live) == without_address(generated)
    assert {
        host: host_vars["ansible_host"]
        for host, host_vars in live["zrok_frontends"].items()
    } == ec2


def test_aws_live_skips_untagged(ec2):
    live = read_inventory(LIVE / "aws_ec2.yml")

    hosts = {host for group in live.values() for host in group}
    assert hosts == {"us-east-1", "us-east-2"}


def test_requirements_pin_bundled_collections():
    import ansible_collections.amazon.aws as amazon_aws
    import ansible_collections.hetzner.hcloud as hetzner_hcloud

    pins = {
        item["name"]: item["version"]
        for item in yaml.safe_load((ROOT / "requirements.yml").read_text())[
            "collections"
        ]
    }
    bundled = {}
    for name, package in (
        ("hetzner.hcloud", hetzner_hcloud),
        ("amazon.aws", amazon_aws),
    ):
        manifest = Path(package.__path__[0]) / "MANIFEST.json"
        bundled[name] = json.loads(manifest.read_text())["collection_info"]["version"]

    assert pins == bundled
