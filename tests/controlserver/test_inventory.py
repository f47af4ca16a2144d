"""Reading frontends from Ansible inventories, and rejecting broken ones."""

from __future__ import annotations

import pytest

from controlserver.errors import InventoryError
from controlserver.inventory import load_inventory
from tests.controlserver.conftest import write_inventory

GOOD = {
    "fleet_region": "eu-central",
    "fleet_location": "fsn1",
    "fleet_capacity": 150,
    "zrok_api_endpoint": "https://api.eu-central.fleet.example.com/",
    "zrok_share_domain": "eu-central.fleet.example.com",
    "ansible_host": "203.0.113.10",
}


def test_yaml_inventory(tmp_path):
    frontends = load_inventory(write_inventory(tmp_path / "inventory.yml", {"eu-central-1": GOOD}))

    frontend = frontends["eu-central-1"]
    assert frontend.region == "eu-central"
    assert frontend.capacity == 150
    assert (frontend.latitude, frontend.longitude) == (50.5, 12.4)
    assert frontend.api_endpoint == "https://api.eu-central.fleet.example.com"
    assert frontend.health_url == "http://203.0.113.10/healthz"


def test_ini_inventory(tmp_path):
    path = tmp_path / "hosts.ini"
    path.write_text(
        "[zrok_frontends]\n"
        "us-east-1a ansible_host=198.51.100.7 fleet_region=us-east fleet_location=us-east-1 fleet_capacity=120 "
        "zrok_api_endpoint=https://api.us-east.example.com zrok_share_domain=us-east.example.com\n"
    )

    frontend = load_inventory(path)["us-east-1a"]

    assert frontend.capacity == 120
    assert (frontend.latitude, frontend.longitude) == (39.0, -77.5)


def test_directory_with_group_vars(tmp_path):
    directory = tmp_path / "inventory"
    (directory / "group_vars" / "zrok_frontends").mkdir(parents=True)
    (directory / "group_vars" / "zrok_frontends" / "main.yml").write_text(
        "fleet_capacity: 99\nfleet_region: eu\nfleet_location: hel1\n")
    host = {k: v for k, v in GOOD.items() if k not in ("fleet_capacity", "fleet_region", "fleet_location")}
    write_inventory(directory / "frontends.yml", {"hel-1": host})
    (directory / "printers.yml").write_text("all:\n  children:\n    printers:\n      hosts:\n        p-1: {}\n")

    frontend = load_inventory(directory)["hel-1"]

    assert frontend.capacity == 99
    assert frontend.location == "hel1"


def test_coordinates_override_and_health_url(tmp_path):
    host = {**GOOD, "fleet_location": "somewhere-else", "fleet_latitude": 10.5, "fleet_longitude": -20.25,
            "fleet_health_url": "https://health.example.com/ok"}

    frontend = load_inventory(write_inventory(tmp_path / "inventory.yml", {"x-1": host}))["x-1"]

    assert (frontend.latitude, frontend.longitude) == (10.5, -20.25)
    assert frontend.health_url == "https://health.example.com/ok"


@pytest.mark.parametrize("change,expected", [
    ({"fleet_capacity": None}, "frontend eu-central-1: fleet_capacity is missing"),
    ({"zrok_share_domain": None}, "frontend eu-central-1: zrok_share_domain is missing"),
    ({"fleet_capacity": "lots"}, "frontend eu-central-1: fleet_capacity 'lots' is invalid"),
    ({"fleet_capacity": -1}, "frontend eu-central-1: fleet_capacity -1 is invalid"),
    ({"fleet_capacity": 1.5}, "frontend eu-central-1: fleet_capacity 1.5 is invalid"),
    ({"fleet_location": "mars-1"}, "frontend eu-central-1: fleet_location 'mars-1' is not a known"),
    ({"zrok_api_endpoint": "api.example.com"}, "frontend eu-central-1: zrok_api_endpoint 'api.example.com' is not"),
    ({"zrok_share_domain": "bad domain!"}, "frontend eu-central-1: zrok_share_domain 'bad domain!' is not"),
    ({"fleet_latitude": 10.0}, "frontend eu-central-1: set both fleet_latitude and fleet_longitude"),
])
def test_invalid_field_names_host_and_field(tmp_path, change, expected):
    host = {**GOOD, **change}
    host = {k: v for k, v in host.items() if v is not None}
    with pytest.raises(InventoryError) as error:
        load_inventory(write_inventory(tmp_path / "inventory.yml", {"eu-central-1": host}))
    assert str(error.value).startswith(expected)


def test_duplicate_share_domain_rejected(tmp_path):
    other = {**GOOD, "zrok_api_endpoint": "https://api.other.example.com"}
    with pytest.raises(InventoryError, match="frontend eu-2: zrok_share_domain .* duplicates frontend eu-1"):
        load_inventory(write_inventory(tmp_path / "inventory.yml", {"eu-1": GOOD, "eu-2": other}))


def test_duplicate_host_key_rejected(tmp_path):
    path = tmp_path / "inventory.yml"
    path.write_text("all:\n  children:\n    zrok_frontends:\n      hosts:\n"
                    "        eu-1: {fleet_capacity: 1}\n        eu-1: {fleet_capacity: 2}\n")
    with pytest.raises(InventoryError, match="duplicate mapping key 'eu-1'"):
        load_inventory(path)


def test_missing_group_rejected(tmp_path):
    path = tmp_path / "inventory.yml"
    path.write_text("all:\n  children:\n    printers:\n      hosts:\n        p-1: {}\n")
    with pytest.raises(InventoryError, match="has no group zrok_frontends"):
        load_inventory(path)


def test_missing_file_rejected(tmp_path):
    with pytest.raises(InventoryError, match="does not exist"):
        load_inventory(tmp_path / "nope.yml")


def test_broken_reload_keeps_last_good(api, fleet_files):
    path = fleet_files["inventory"]
    good_text = path.read_text()
    path.write_text(good_text.replace("capacity: 5", "capacity: many", 1))

    accepted = api.app.state.inventory.reload()

    assert accepted is False
    ready = api.client.get("/readyz").json()
    assert "fleet_capacity 'many' is invalid" in ready["inventory_error"]
    frontends = api.frontends()
    assert set(frontends) == {"eu-1", "us-1"}
    assert frontends["eu-1"]["capacity"] == 5
    assert api.register(api.enrollment_token(), "printer-0001").status_code == 200
    assert 'fleet_inventory_reloads_total{result="rejected"} 1.0' in api.client.get("/metrics").text


def test_good_reload_changes_capacity(api, fleet_files):
    path = fleet_files["inventory"]
    path.write_text(path.read_text().replace("fleet_capacity: 5", "fleet_capacity: 7"))

    assert api.app.state.inventory.reload()

    assert {f["capacity"] for f in api.frontends().values()} == {7}
    assert api.client.get("/readyz").json()["inventory_error"] is None


def test_every_provisioned_location_has_coordinates():
    """Each Hetzner location and AWS region that the Pulumi program accepts is placed on the map."""
    from controlserver.locations import LOCATIONS
    from infra.locations import LOCATIONS_BY_PROVIDER

    for provider, locations in LOCATIONS_BY_PROVIDER.items():
        missing = sorted(set(locations) - set(LOCATIONS))
        assert missing == [], f"{provider} locations without coordinates in controlserver.locations"
