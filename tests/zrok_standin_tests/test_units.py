"""Small units of the stand-in: the store, Host parsing, router addresses and go-pretty tables."""

import os

import pytest

from tests.zrok_standin import identity, output, relay
from tests.zrok_standin.frontend import host_only
from tests.zrok_standin.store import Store


def test_store_reloads_file_changed_elsewhere(tmp_path):
    path = tmp_path / "zrok.db"
    controller_copy = Store(str(path))
    with controller_copy.transaction() as data:
        data["accounts"].append({"email": "a@fleet.test"})
    bootstrap_copy = Store(str(path))
    with bootstrap_copy.transaction() as data:
        data["config_types"].append({"name": "zrok.proxy.v1"})
    os.utime(path, ns=(1, 1))  # a different mtime even on coarse file systems

    with controller_copy.lock:
        seen = controller_copy.read()

    assert seen["config_types"] == [{"name": "zrok.proxy.v1"}]
    assert seen["accounts"] == [{"email": "a@fleet.test"}]


def test_failed_transaction_keeps_store(tmp_path):
    store = Store(str(tmp_path / "zrok.db"))

    with pytest.raises(RuntimeError):
        with store.transaction() as data:
            data["accounts"].append({"email": "b@fleet.test"})
            raise RuntimeError("handler failed")

    with store.lock:
        assert store.read()["accounts"] == []
    assert not (tmp_path / "zrok.db").exists()


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("p-1.lab-eu.fleet.test", "p-1.lab-eu.fleet.test"),
        ("p-1.lab-eu.fleet.test:443", "p-1.lab-eu.fleet.test"),
        ("10.213.47.11:8080", "10.213.47.11"),
        ("[::1]:8080", "::1"),
        ("::1", "::1"),
    ],
)
def test_host_only_strips_port(header, host):
    assert host_only(header) == host


def test_router_address_order():
    override = {"standin": {"router": "tls:127.0.0.1:23022"}}
    plain = {"standin": {}}

    assert identity.router_address(override, "https://api.lab-eu.fleet.test") == ("127.0.0.1", 23022)
    assert identity.router_address(plain, "https://api.lab-eu.fleet.test") == ("api.lab-eu.fleet.test", 3022)
    assert identity.router_address(plain) == ("127.0.0.1", 3022)
    assert relay.parse_address("tls:0.0.0.0:3022") == ("0.0.0.0", 3022)


def test_table_matches_go_pretty_rounded_style():
    table = output.render_table(["Frontend Token", "Dynamic"], [["abc", True]])

    assert table.splitlines() == [
        "╭────────────────┬─────────╮",
        "│ FRONTEND TOKEN │ DYNAMIC │",
        "├────────────────┼─────────┤",
        "│ abc            │ true    │",
        "╰────────────────┴─────────╯",
    ]
