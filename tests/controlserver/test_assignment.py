"""Assignment rules: nearest healthy frontend first, load, stickiness, batched moves."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from controlserver.services.assignment import (
    FrontendState,
    Placement,
    best_few,
    best_first,
    rank,
    score,
    sites_of,
)
from tests.controlserver.conftest import NEAR_EU, NEAR_US, frontend_vars, run_sql, write_inventory

DATABASE_ENGINES = ("sqlite", "postgresql")


def state(name: str, lat: float, lon: float, assigned: int = 0, capacity: int = 10, **flags) -> FrontendState:
    return FrontendState(name=name, region=name.split("-")[0], latitude=lat, longitude=lon, capacity=capacity,
                         assigned=assigned, healthy=flags.get("healthy", True), draining=flags.get("draining", False),
                         in_inventory=flags.get("in_inventory", True), api_endpoint=f"https://api.{name}.test")


FRONTENDS = [state("eu-1", 50.5, 12.4), state("us-1", 39.0, -77.5), state("ap-1", 1.3, 103.8)]


def names(frontends) -> list[str]:
    return [f.name for f in frontends]


# A few fixed places besides random ones, so that load and names often decide the order.
latitudes = st.sampled_from([50.1, 50.5, 39.0]) | st.floats(min_value=-90, max_value=90)
longitudes = st.sampled_from([8.7, 12.4, -77.5]) | st.floats(min_value=-180, max_value=180)
frontend_states = st.builds(
    state, name=st.sampled_from(["eu-1", "eu-2", "us-1", "us-2", "ap-1"]), lat=latitudes, lon=longitudes,
    assigned=st.integers(0, 12), capacity=st.integers(0, 10), healthy=st.booleans(), draining=st.booleans(),
)
placements = st.builds(
    Placement, latitude=st.none() | latitudes, longitude=st.none() | longitudes,
    region=st.none() | st.sampled_from(["eu", "us", "ap"]),
    latency_ms=st.none() | st.dictionaries(st.sampled_from(["eu-1", "us-1", "ap-1"]), st.floats(0, 500)),
)


@given(st.lists(frontend_states, max_size=8, unique_by=lambda f: f.name), placements,
       st.frozensets(st.sampled_from(["eu-1", "us-2"])))
def test_rank_orders_by_score(frontends, placement, exclude):
    expected = sorted((f for f in frontends if f.assignable and f.name not in exclude),
                      key=lambda f: (score(f, placement, 30.0), f.name))
    assert names(rank(frontends, placement, 30.0, exclude)) == names(expected)


@given(st.lists(frontend_states, max_size=8, unique_by=lambda f: f.name), placements,
       st.frozensets(st.sampled_from(["eu-1", "us-2"])), st.integers(0, 9))
def test_best_first_and_best_few_follow_rank(frontends, placement, exclude, count):
    # The registration path takes best_first() and the heartbeat's candidates best_few().
    ranked = names(rank(frontends, placement, 30.0, exclude))
    states = {frontend.name: frontend for frontend in frontends}
    assert names(best_first(states, placement, 30.0, exclude)) == ranked
    # With sites, the first one comes from the nearest sites only; several frontends often share one.
    assert names(best_first(states, placement, 30.0, exclude, sites_of(frontends))) == ranked
    assert names(best_few(count, frontends, placement, 30.0, exclude)) == ranked[:count]


def test_best_first_loaded_nearest_site():
    # The two sites are about 2 ms of estimated round trip apart, so load decides between them.
    frontends = [state("eu-1", 50.5, 12.4, assigned=9), state("eu-2", 50.5, 12.4, assigned=8),
                 state("eu-3", 49.5, 11.1, assigned=0), state("us-1", 39.0, -77.5)]
    states = {frontend.name: frontend for frontend in frontends}
    ordered = names(best_first(states, Placement(latitude=50.6, longitude=12.5), 30.0, sites=sites_of(frontends)))
    assert ordered == ["eu-3", "eu-2", "eu-1", "us-1"]


def test_with_assigned_changes_only_the_count():
    original = state("eu-1", 50.5, 12.4, assigned=3)
    changed = original.with_assigned(4)
    assert (changed.assigned, original.assigned) == (4, 3)
    assert changed == FrontendState(**{**original.__dict__, "assigned": 4})


def test_rank_nearest_first():
    assert names(rank(FRONTENDS, Placement(**NEAR_US), 30.0)) == ["us-1", "eu-1", "ap-1"]
    assert names(rank(FRONTENDS, Placement(**NEAR_EU), 30.0)) == ["eu-1", "us-1", "ap-1"]


def test_rank_skips_unusable():
    frontends = [state("eu-1", 50.5, 12.4, healthy=False), state("eu-2", 50.5, 12.4, draining=True),
                 state("eu-3", 50.5, 12.4, in_inventory=False), state("eu-4", 50.5, 12.4, assigned=10),
                 state("us-1", 39.0, -77.5)]
    assert names(rank(frontends, Placement(**NEAR_EU), 30.0)) == ["us-1"]


def test_rank_prefers_less_loaded_neighbour():
    frontends = [state("eu-1", 50.5, 12.4, assigned=9), state("eu-2", 49.5, 11.1, assigned=1)]
    assert names(rank(frontends, Placement(**NEAR_EU), 30.0)) == ["eu-2", "eu-1"]


def test_rank_measured_latency_wins():
    placement = Placement(latency_ms={"us-1": 8.0, "eu-1": 140.0}, **NEAR_EU)
    assert names(rank(FRONTENDS, placement, 30.0))[0] == "us-1"


def test_rank_region_hint():
    assert names(rank(FRONTENDS, Placement(region="ap"), 30.0))[0] == "ap-1"


def test_rank_without_hints_balances_load():
    frontends = [state("eu-1", 50.5, 12.4, assigned=5), state("us-1", 39.0, -77.5, assigned=2)]
    assert names(rank(frontends, Placement(), 30.0)) == ["us-1", "eu-1"]


def test_nearest_healthy_frontend_first(api):
    token = api.enrollment_token()

    near_us = api.register(token, "printer-0001", **NEAR_US).json()["assignment"]["frontend"]
    near_eu = api.register(token, "printer-0002", **NEAR_EU).json()["assignment"]["frontend"]
    mark_unhealthy(api, "eu-1")
    near_eu_while_down = api.register(token, "printer-0003", **NEAR_EU).json()["assignment"]["frontend"]

    assert (near_us, near_eu, near_eu_while_down) == ("us-1", "eu-1", "us-1")


def test_frontend_without_admin_secret_skipped(api, fleet_files):
    fleet_files["secrets"].write_text("zrok_admin_secrets:\n  us-1: us-admin-secret-0f9e8d7c6b5a4932\n")
    api.app.state.inventory.reload()

    assignment = api.register(api.enrollment_token(), "printer-0001", **NEAR_EU).json()["assignment"]

    assert assignment["frontend"] == "us-1"
    assert api.frontends()["eu-1"]["zrok_admin_secret"] is False


def test_sticky_after_new_nearer_frontend(api, fleet_files, zrok_eu):
    token = api.enrollment_token()
    registered = api.register(token, "printer-0001", latitude=48.9, longitude=2.4).json()
    assert registered["assignment"]["frontend"] == "eu-1"
    hosts = {
        "eu-1": frontend_vars(zrok_eu, "eu", "fsn1", 5, "eu.fleet.test"),
        "us-1": frontend_vars(fleet_files["zrok"]["us-1"], "us", "us-east-1", 5, "us.fleet.test"),
        "paris-1": {**frontend_vars(zrok_eu, "eu", "eu-west-3", 5, "paris.fleet.test"),
                    "zrok_api_endpoint": f"{zrok_eu.url}/paris"},
    }
    write_inventory(fleet_files["inventory"], hosts)
    fleet_files["secrets"].write_text(
        "zrok_admin_secrets:\n  eu-1: eu-admin-secret-a1b2c3d4e5f60718\n"
        "  us-1: us-admin-secret-0f9e8d7c6b5a4932\n  paris-1: eu-admin-secret-a1b2c3d4e5f60718\n")
    assert api.app.state.inventory.reload()

    again = api.register(registered["printer_token"], "printer-0001", latitude=48.9, longitude=2.4).json()
    newcomer = api.register(token, "printer-0002", latitude=48.9, longitude=2.4).json()

    assert again["assignment"]["frontend"] == "eu-1"
    assert newcomer["assignment"]["frontend"] == "paris-1"
    assert api.app.state.fleet.move_batch() == 0


def test_register_moves_off_unhealthy_frontend(api):
    registered = api.register(api.enrollment_token(), "printer-0001", **NEAR_EU).json()
    mark_unhealthy(api, "eu-1")

    again = api.register(registered["printer_token"], "printer-0001").json()

    assert again["assignment"]["frontend"] == "us-1"
    frontends = api.frontends()
    assert (frontends["eu-1"]["assigned"], frontends["us-1"]["assigned"]) == (0, 1)


def test_drain_moves_in_batches(api, fleet_files):
    token = api.enrollment_token()
    tokens = {}
    for number in range(5):
        printer_id = f"printer-{number:04d}"
        tokens[printer_id] = api.register(token, printer_id, **NEAR_EU).json()["printer_token"]
    write_capacity(fleet_files, "us-1", 10)
    api.client.post("/v1/frontends/eu-1/drain", headers=api.admin)
    fleet = api.app.state.fleet

    heartbeats_before = [api.heartbeat(t, p, "eu-1").json() for p, t in tokens.items()]
    moved = [fleet.move_batch(), fleet.move_batch(), fleet.move_batch()]
    heartbeats_after = [api.heartbeat(t, p, "eu-1").json() for p, t in tokens.items()]

    assert all(h["action"] == "stay" and "draining" in h["reason"] for h in heartbeats_before)
    assert moved == [3, 2, 0]
    assert all(h["action"] == "move" and h["assignment"]["frontend"] == "us-1" for h in heartbeats_after)
    assert {h["reason"] for h in heartbeats_after} == {"assigned to frontend us-1 (the previous frontend is draining)"}
    frontends = api.frontends()
    assert (frontends["eu-1"]["assigned"], frontends["us-1"]["assigned"]) == (0, 5)


def test_recovered_frontend_causes_no_stampede(api, fleet_files):
    token = api.enrollment_token()
    for number in range(3):
        api.register(token, f"printer-{number:04d}", **NEAR_EU)
    mark_unhealthy(api, "eu-1")
    fleet = api.app.state.fleet
    assert fleet.move_batch() == 3

    mark_healthy(api, "eu-1")

    assert fleet.move_batch() == 0
    assert api.frontends()["us-1"]["assigned"] == 3


def test_moves_stop_when_capacity_runs_out(api, fleet_files):
    token = api.enrollment_token()
    for number in range(5):
        api.register(token, f"printer-{number:04d}", **NEAR_EU)
    for number in range(3):
        api.register(token, f"printer-us-{number:04d}", **NEAR_US)
    api.client.post("/v1/frontends/eu-1/drain", headers=api.admin)
    fleet = api.app.state.fleet

    moved = fleet.move_batch() + fleet.move_batch() + fleet.move_batch()

    frontends = api.frontends()
    assert moved == 2
    assert (frontends["eu-1"]["assigned"], frontends["us-1"]["assigned"]) == (3, 5)


def test_frontend_removed_from_inventory(api, fleet_files):
    token = api.enrollment_token()
    api.register(token, "printer-0001", **NEAR_EU)
    write_inventory(fleet_files["inventory"], {
        "us-1": frontend_vars(fleet_files["zrok"]["us-1"], "us", "us-east-1", 5, "us.fleet.test")})
    assert api.app.state.inventory.reload()

    moved = api.app.state.fleet.move_batch()

    assert moved == 1
    frontends = api.frontends()
    assert frontends["eu-1"]["in_inventory"] is False
    assert api.printer("printer-0001")["frontend"] == "us-1"
    assert api.printer("printer-0001")["move_reason"] == "removed"


def mark_unhealthy(api, name: str) -> None:
    set_health(api, name, False)


def mark_healthy(api, name: str) -> None:
    set_health(api, name, True)


def set_health(api, name: str, healthy: bool) -> None:
    # Stands for the monitor's verdict; the monitor's probing is tested with real processes.
    url = api.app.state.fleet.db.url.render_as_string(hide_password=False)
    run_sql(url.replace("+psycopg", ""), "UPDATE frontends SET healthy = :healthy WHERE name = :name",
            healthy=healthy, name=name)
    api.app.state.fleet.invalidate_frontend_states()


def write_capacity(fleet_files, name: str, capacity: int) -> None:
    run_sql(fleet_files["database_url"], "UPDATE frontends SET capacity = :capacity WHERE name = :name",
            capacity=capacity, name=name)
