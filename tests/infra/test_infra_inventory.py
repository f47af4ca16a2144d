"""The inventory command: recorded stack outputs in, the fleet's Ansible inventory out."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra import inventory
from infra.inventory import (
    InventoryError,
    StackSource,
    generate,
    parse_outputs,
    render_inventory,
)
from infra_mocks import DATA, EXAMPLE_STACKS, ROOT

OUTPUTS = DATA / "outputs"
EXPECTED = DATA / "expected"
ANSIBLE_INVENTORY = Path(sys.executable).parent / "ansible-inventory"


def sources() -> list[StackSource]:
    return [StackSource(stack, OUTPUTS / f"{stack}.json") for stack in EXAMPLE_STACKS]


def recorded(stack: str) -> dict:
    return json.loads((OUTPUTS / f"{stack}.json").read_text())


@pytest.fixture
def generated(tmp_path) -> Path:
    # A folder of its own: ansible-inventory reads every file in it, and ANSIBLE_HOME below is
    # inside tmp_path.
    output_dir = tmp_path / "generated"
    generate(sources(), output_dir=output_dir)
    return output_dir


def ansible_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env["ANSIBLE_HOME"] = str(tmp_path / "ansible-home")
    env["ANSIBLE_LOCAL_TEMP"] = str(tmp_path / "ansible-tmp")
    return env


# --- recorded outputs and the expected files -----------------------------------------------------


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_recorded_outputs_match_program(example_runs, stack):
    exports, _ = example_runs[stack]

    assert json.loads(json.dumps(exports)) == recorded(stack)


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_generated_matches_expected(generated, stack):
    assert (generated / f"{stack}.yml").read_text() == (
        EXPECTED / f"{stack}.yml"
    ).read_text()


def test_generated_follows_contract(generated):
    data = yaml.safe_load((generated / "eu-central.yml").read_text())

    frontend = data["all"]["children"]["zrok_frontends"]["hosts"]["eu-central-1"]
    assert frontend == {
        "ansible_host": "203.0.113.203",
        "ansible_host_ipv6": "2001:db8:f943::1",
        "ansible_user": "ansible",
        "fleet_provider": "hcloud",
        "fleet_region": "eu-central",
        "fleet_location": "fsn1",
        "fleet_capacity": 150,
        "zrok_api_endpoint": "https://api.eu-central-1.eu-central.fleet.example.com",
        "zrok_share_domain": "eu-central-1.eu-central.fleet.example.com",
    }
    control = data["all"]["children"]["control_servers"]["hosts"]["control-1"]
    assert control["ansible_host"] == "203.0.113.114"
    assert control["fleet_provider"] == "hcloud"
    assert control["fleet_location"] == "fsn1"


def test_aws_frontend_has_no_ipv6(generated):
    data = yaml.safe_load((generated / "us-east.yml").read_text())

    for host in data["all"]["children"]["zrok_frontends"]["hosts"].values():
        assert "ansible_host_ipv6" not in host
    assert "control_servers" not in data["all"]["children"]


# --- determinism ---------------------------------------------------------------------------------


def test_regeneration_identical(tmp_path):
    first = tmp_path / "first"
    second = tmp_path / "second"

    generate(sources(), output_dir=first)
    results = generate(sources(), output_dir=first)
    generate(list(reversed(sources())), output_dir=second)

    assert all(changed is False for _, changed, _ in results)
    for stack in EXAMPLE_STACKS:
        assert (first / f"{stack}.yml").read_bytes() == (
            second / f"{stack}.yml"
        ).read_bytes()


def test_host_order_natural():
    data = recorded("eu-central")
    frontends = [
        dict(data["frontends"][0], name=f"eu-central-{n}") for n in (10, 2, 1, 9)
    ]
    outputs = parse_outputs(dict(data, frontends=frontends), "test")

    hosts = yaml.safe_load(render_inventory("eu-central", outputs))["all"]["children"][
        "zrok_frontends"
    ]["hosts"]

    assert list(hosts) == [
        "eu-central-1",
        "eu-central-2",
        "eu-central-9",
        "eu-central-10",
    ]


# --- Ansible reads it ----------------------------------------------------------------------------


def test_ansible_inventory_lists_file(generated, tmp_path):
    result = subprocess.run(
        [str(ANSIBLE_INVENTORY), "-i", str(generated / "eu-central.yml"), "--list"],
        capture_output=True,
        text=True,
        env=ansible_env(tmp_path),
        check=False,
    )

    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert listing["zrok_frontends"]["hosts"] == ["eu-central-1", "eu-central-2"]
    assert listing["control_servers"]["hosts"] == ["control-1"]
    hostvars = listing["_meta"]["hostvars"]
    assert (
        hostvars["eu-central-2"]["zrok_share_domain"]
        == "eu-central-2.eu-central.fleet.example.com"
    )
    assert hostvars["eu-central-2"]["fleet_capacity"] == 150
    assert (
        hostvars["control-1"]["fleet_control_url"]
        == "https://control.fleet.example.com:8443"
    )


def test_ansible_inventory_lists_directory(generated, tmp_path):
    result = subprocess.run(
        [str(ANSIBLE_INVENTORY), "-i", str(generated), "--list"],
        capture_output=True,
        text=True,
        env=ansible_env(tmp_path),
        check=False,
    )

    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert sorted(listing["zrok_frontends"]["hosts"]) == [
        "ap-southeast-1",
        "eu-central-1",
        "eu-central-2",
        "us-east-1",
        "us-east-2",
    ]
    assert listing["_meta"]["hostvars"]["us-east-1"]["fleet_provider"] == "aws"
    assert listing["_meta"]["hostvars"]["ap-southeast-1"]["fleet_capacity"] == 100


def test_inventory_manager_reads_directory(generated):
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    manager = InventoryManager(loader=DataLoader(), sources=[str(generated)])

    frontends = {
        host.name: host.vars for host in manager.groups["zrok_frontends"].get_hosts()
    }
    assert sorted(frontends) == [
        "ap-southeast-1",
        "eu-central-1",
        "eu-central-2",
        "us-east-1",
        "us-east-2",
    ]
    assert (
        frontends["us-east-2"]["zrok_api_endpoint"]
        == "https://api.us-east-2.us-east.aws.fleet.example.com"
    )
    assert frontends["ap-southeast-1"]["fleet_location"] == "sin"
    assert frontends["eu-central-1"]["ansible_host"] == "203.0.113.203"
    assert [host.name for host in manager.groups["control_servers"].get_hosts()] == [
        "control-1"
    ]


# --- input errors --------------------------------------------------------------------------------


def test_duplicate_frontend_across_stacks(tmp_path):
    copy = tmp_path / "eu-central-copy.json"
    copy.write_text((OUTPUTS / "eu-central.json").read_text())

    with pytest.raises(
        InventoryError,
        match="frontend eu-central-1 occurs in stack eu-central and stack eu-central-copy",
    ):
        generate(
            sources() + [StackSource("eu-central-copy", copy)],
            output_dir=tmp_path / "out",
        )
    assert not (tmp_path / "out").exists()


def test_control_server_reads_directory(generated):
    from controlserver.inventory import load_inventory

    frontends = load_inventory(generated)

    assert sorted(frontends) == [
        "ap-southeast-1",
        "eu-central-1",
        "eu-central-2",
        "us-east-1",
        "us-east-2",
    ]
    us_east_2 = frontends["us-east-2"]
    assert us_east_2.api_endpoint == "https://api.us-east-2.us-east.aws.fleet.example.com"
    assert us_east_2.share_domain == "us-east-2.us-east.aws.fleet.example.com"
    assert us_east_2.capacity == 150
    assert frontends["eu-central-1"].region == "eu-central"


def test_duplicate_frontend_in_existing_file(generated, tmp_path):
    copy = tmp_path / "europe.json"
    copy.write_text((OUTPUTS / "eu-central.json").read_text())

    with pytest.raises(
        InventoryError,
        match="frontend eu-central-1 occurs in stack eu-central and stack europe",
    ):
        generate([StackSource("europe", copy)], output_dir=generated)


def test_invalid_ipv4_named(tmp_path):
    data = recorded("us-east")
    data["frontends"][1]["ipv4"] = "2001:db8::1"
    path = tmp_path / "us-east.json"
    path.write_text(json.dumps(data))

    with pytest.raises(InventoryError) as raised:
        generate([StackSource("us-east", path)], output_dir=tmp_path)

    assert f"{path}: invalid stack outputs" in str(raised.value)
    assert "frontends.1.ipv4" in str(raised.value)
    assert "is not an IPv4 address" in str(raised.value)


def test_secret_placeholder_rejected():
    data = recorded("us-east")
    data["frontends"][0]["ipv4"] = "[secret]"

    with pytest.raises(InventoryError, match="secret placeholder"):
        parse_outputs(data, "us-east.json")


def test_capacity_below_one_rejected():
    data = recorded("ap-southeast")
    data["frontends"][0]["capacity"] = 0

    with pytest.raises(InventoryError, match="frontends.0.capacity"):
        parse_outputs(data, "ap-southeast.json")


def test_missing_outputs_file(tmp_path):
    with pytest.raises(InventoryError, match="file not found"):
        generate(
            [StackSource("nowhere", tmp_path / "nowhere.json")], output_dir=tmp_path
        )


def test_lab_provider_accepted():
    data = recorded("ap-southeast")
    data["frontends"][0]["provider"] = "lab"

    assert parse_outputs(data, "lab.json").frontends[0].provider == "lab"


# --- command line --------------------------------------------------------------------------------


def test_command_writes_and_checks(tmp_path, capsys):
    arguments = [
        f"--outputs={OUTPUTS / 'eu-central.json'}",
        "--output-dir",
        str(tmp_path),
    ]

    assert inventory.main(["--check", *arguments]) == 1
    assert "out of date" in capsys.readouterr().out

    assert inventory.main(arguments) == 0
    assert "written (2 frontend(s), 1 control server(s))" in capsys.readouterr().out

    assert inventory.main(["--check", *arguments]) == 0
    assert "up to date" in capsys.readouterr().out
    assert (tmp_path / "eu-central.yml").read_text() == (
        EXPECTED / "eu-central.yml"
    ).read_text()


def test_command_stack_from_named_file(tmp_path):
    argument = f"europe={OUTPUTS / 'eu-central.json'}"

    assert inventory.main(["--outputs", argument, "--output-dir", str(tmp_path)]) == 0
    assert (tmp_path / "europe.yml").exists()


def test_command_without_sources(capsys):
    assert inventory.main([]) == 2
    assert (
        "give at least one --outputs FILE or --stack STACK" in capsys.readouterr().err
    )


def test_command_without_pulumi_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))

    assert inventory.main(["--stack", "eu-central", "--output-dir", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert "the pulumi CLI is not installed" in error
    assert "pulumi stack output --json --stack eu-central > eu-central.json" in error


def test_command_reads_pulumi_cli(tmp_path, monkeypatch):
    # A stand-in `pulumi` that prints the recorded outputs of the stack it is asked for.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "pulumi"
    fake.write_text(
        "#!/bin/sh\n"
        '[ "$1 $2 $3 $4" = "stack output --json --stack" ] || exit 3\n'
        f'exec cat "{OUTPUTS}/$5.json"\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")

    assert (
        inventory.main(
            [
                "--stack",
                "myorg/printer-fleet/us-east",
                "--output-dir",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    assert (tmp_path / "out" / "us-east.yml").read_text() == (
        EXPECTED / "us-east.yml"
    ).read_text()


def test_command_reports_pulumi_failure(tmp_path, monkeypatch, capsys):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "pulumi"
    fake.write_text(
        "#!/bin/sh\necho 'error: no stack named \"nope\" found' >&2\nexit 255\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")

    assert inventory.main(["--stack", "nope", "--output-dir", str(tmp_path)]) == 1
    assert (
        'exit code 255: error: no stack named "nope" found' in capsys.readouterr().err
    )


def test_module_entry_point(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "infra.inventory",
            "--outputs",
            str(OUTPUTS / "us-east.json"),
            "--output-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "us-east.yml").read_text() == (
        EXPECTED / "us-east.yml"
    ).read_text()


def test_control_server_only_stack(tmp_path):
    data = dict(recorded("eu-central"), frontends=[])
    path = tmp_path / "control.json"
    path.write_text(json.dumps(data))

    generate([StackSource("control", path)], output_dir=tmp_path / "out")

    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    manager = InventoryManager(loader=DataLoader(), sources=[str(tmp_path / "out")])
    assert manager.groups["zrok_frontends"].get_hosts() == []
    assert [host.name for host in manager.groups["control_servers"].get_hosts()] == ["control-1"]
