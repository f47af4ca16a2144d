"""The fleet agent against a fake control server and a fake zrok2 CLI."""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from typing import Optional

import pytest

from conftest import (
    ACCOUNT_TOKEN_EU,
    ENROLLMENT_TOKEN,
    MOONRAKER_API_KEY,
    PRINTER_TOKEN,
    SECRETS,
    FakeSleep,
    assignment,
    fleet_agent,
    kill_share_process,
)

EU = "https://api.lab-eu.fleet.test"
US = "https://api.lab-us.fleet.test"


def wait_until(predicate, what: str) -> None:
    """Poll until predicate() is true; the limit only guards against a hung test."""
    for _ in range(400):
        if predicate():
            return
        time.sleep(0.025)
    raise AssertionError(f"gave up waiting for {what}")


def wait_for_share(fake_zrok, endpoint: str = EU) -> dict:
    wait_until(lambda: len(fake_zrok.shares(endpoint)) == 1, f"one share on {endpoint}")
    return fake_zrok.shares(endpoint)[0]


# -- enrollment -------------------------------------------------------------------------------


def test_enrollment_stores_token_and_shares(make_agent, control_server, fake_zrok):
    agent = make_agent()

    agent.start()

    registrations = control_server.posts("register")
    assert len(registrations) == 1
    assert registrations[0].token == ENROLLMENT_TOKEN
    body = registrations[0].body
    assert body["printer_id"] == "printer-01"
    assert body["hardware_id"] == "ab" * 32
    assert body["moonraker_api_key"] == MOONRAKER_API_KEY
    assert body["moonraker_version"] == "v0.11.0"
    assert (body["latitude"], body["longitude"], body["region"]) == (50.1, 8.7, "lab-eu")

    token_file = agent.config.token_file
    assert open(token_file).read().strip() == PRINTER_TOKEN
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(token_file)).st_mode) == 0o700

    share = wait_for_share(fake_zrok)
    assert share["frontendEndpoints"] == ["p-printer-01.lab-eu.fleet.test"]
    assert fake_zrok.verbs()[:5] == ["config set", "enable", "list names", "create name", "list shares"]
    # The share process and the share-token lookup for status.json run concurrently.
    assert "share public" in fake_zrok.verbs()[5:]
    share_call = next(call for call in fake_zrok.calls() if call[:2] == ["share", "public"])
    assert share_call[:6] == ["share", "public", "http://127.0.0.1:7125", "-n", "public:p-printer-01", "--headless"]
    assert share_call[share_call.index("--basic-auth") + 1] == "fleet:basic-pass-secret-999"


def test_token_file_keeps_mode_on_rewrite(tmp_path):
    path = tmp_path / "state" / "printer_token"
    fleet_agent.write_secret_file(str(path), "first")
    os.chmod(path, 0o644)

    fleet_agent.write_secret_file(str(path), "second")

    assert path.read_text().strip() == "second"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["printer_token"]


def test_registration_without_any_token_fails(make_agent):
    agent = make_agent(config={"enrollment_token": ""})

    with pytest.raises(fleet_agent.ConfigError, match="enrollment_token"):
        agent.register()


def test_rejected_printer_token_reenrolls(make_agent, control_server):
    agent = make_agent()
    fleet_agent.write_secret_file(agent.config.token_file, "revoked-token")

    agent.register()

    tokens = [r.token for r in control_server.posts("register")]
    assert tokens == ["revoked-token", ENROLLMENT_TOKEN]
    assert open(agent.config.token_file).read().strip() == PRINTER_TOKEN


def test_printer_id_conflict_waits_and_keeps_id(make_agent, control_server):
    conflict = (409, {"error": "printer_id_conflict", "message": "printer-01 is enrolled from another machine"})
    control_server.scripted["register"] = [conflict]
    agent = make_agent(config={"conflict_retry_s": 3600})

    agent.register()

    registrations = control_server.posts("register")
    assert [r.body["printer_id"] for r in registrations] == ["printer-01", "printer-01"]
    assert agent.fake_sleep.delays == [3600]


# -- restart after a crash ----------------------------------------------------------------------


def test_restart_reuses_registration_and_removes_stale_share(make_agent, control_server, fake_zrok):
    first = make_agent()
    first.start()
    stale = wait_for_share(fake_zrok)
    kill_share_process(first)
    first.share = None
    fake_zrok.clear_calls()

    second = make_agent()
    second.start()

    registrations = control_server.posts("register")
    assert [r.token for r in registrations] == [ENROLLMENT_TOKEN, PRINTER_TOKEN]
    assert control_server.tokens_issued == 1
    assert "enable" not in fake_zrok.verbs()
    assert "create name" not in fake_zrok.verbs()
    assert ["delete", "share", stale["shareToken"]] in fake_zrok.calls()
    fresh = wait_for_share(fake_zrok)
    assert fresh["shareToken"] != stale["shareToken"]


class RecordingZrokController:
    """Disables environments in the fake zrok state and records each call."""

    def __init__(self, fake_zrok, fail_with: Optional[Exception] = None) -> None:
        self.fake_zrok = fake_zrok
        self.fail_with = fail_with
        self.calls: list[tuple[str, str, str]] = []

    def disable_environment(self, api_endpoint: str, account_token: str, environment_zid: str) -> None:
        self.calls.append((api_endpoint, account_token, environment_zid))
        if self.fail_with is not None:
            raise self.fail_with
        self.fake_zrok.remove_environment_shares(api_endpoint, environment_zid)


def drop_environment(agent) -> None:
    """Forget the enabled environment locally while its share stays on the controller.

    This is what remains after the agent left a frontend that was down: `zrok2 disable` could not
    reach the controller, so it cleaned up only the local environment.
    """
    kill_share_process(agent)
    agent.share = None
    os.unlink(agent.zrok.environment_file)


def test_share_of_earlier_environment_is_removed(make_agent, fake_zrok):
    controller = RecordingZrokController(fake_zrok)
    first = make_agent(zrok_controller=controller)
    first.start()
    stale = wait_for_share(fake_zrok)
    drop_environment(first)

    second = make_agent(zrok_controller=controller)
    second.start()

    assert controller.calls == [(EU, ACCOUNT_TOKEN_EU, stale["envZId"])]
    assert ["delete", "share", stale["shareToken"]] not in fake_zrok.calls()
    fresh = wait_for_share(fake_zrok)
    assert fresh["shareToken"] != stale["shareToken"]
    assert fresh["envZId"] == second.zrok.environment()["ziti_identity"]


def test_earlier_environment_unreachable_deletes_nothing(make_agent, fake_zrok):
    unreachable = fleet_agent.ZrokTransientError("disabling environment: HTTP 503")
    controller = RecordingZrokController(fake_zrok, fail_with=unreachable)
    first = make_agent(zrok_controller=controller)
    first.start()
    stale = wait_for_share(fake_zrok)
    drop_environment(first)

    second = make_agent(zrok_controller=controller)
    assert second.start_share_with_retry(fleet_agent.Assignment.from_json(assignment()), attempts=2) is False

    assert len(controller.calls) == 2
    assert fake_zrok.shares(EU) == [stale]
    assert second.share is None


def test_share_conflict_without_cleanup_is_retried(make_agent, fake_zrok):
    first = make_agent()
    first.start()
    wait_for_share(fake_zrok)
    kill_share_process(first)
    first.share = None

    # A share started without removing the stale one first fails with 409 shareConflict.
    second = make_agent()
    second.assignment = fleet_agent.Assignment.from_json(assignment())
    argv, secrets = second.share_argv(second.assignment)
    second.share = fleet_agent.ShareProcess(second.zrok, argv, secrets)
    second.share.start()
    assert second.share.process.wait(timeout=10) == 1

    second.supervise_share()

    assert "delete share" in fake_zrok.verbs()
    wait_for_share(fake_zrok)
    assert second.share.running()


def test_exited_share_process_is_restarted(make_agent, fake_zrok):
    agent = make_agent()
    agent.start()
    wait_for_share(fake_zrok)
    old_pid = agent.share.process.pid
    kill_share_process(agent)

    agent.supervise_share()

    assert agent.share.running()
    assert agent.share.process.pid != old_pid
    wait_for_share(fake_zrok)


# -- heartbeats and orders ----------------------------------------------------------------------


def test_heartbeat_reports_state(make_agent, control_server, fake_zrok):
    agent = make_agent()
    agent.start()
    share = wait_for_share(fake_zrok)

    agent.heartbeat()

    heartbeat = control_server.posts("heartbeat")[-1]
    assert heartbeat.token == PRINTER_TOKEN
    assert heartbeat.path == "/v1/printers/printer-01/heartbeat"
    assert heartbeat.body["frontend"] == "lab-eu-1"
    assert heartbeat.body["share_state"] == "active"
    assert heartbeat.body["share_token"] == share["shareToken"]
    assert heartbeat.body["moonraker_state"] == "ok"
    assert heartbeat.body["klippy_state"] == "ready"
    assert heartbeat.body["agent_version"] == fleet_agent.AGENT_VERSION
    moonraker_requests = [r for r in control_server.requests if r.path == "/server/info"]
    assert moonraker_requests


def test_heartbeat_measures_candidate_latency(make_agent, control_server, fake_zrok):
    agent = make_agent()
    agent.start()
    agent.candidates = [{"frontend": "local", "api_endpoint": control_server.url}]

    body = agent.heartbeat_body()

    assert set(body["latency_ms"]) == {"lab-eu-1", "local"}
    assert body["latency_ms"]["local"] >= 0
    assert ("api.lab-eu.fleet.test", 443) in agent.probed


def test_move_order_moves_share(make_agent, control_server, fake_zrok):
    agent = make_agent()
    agent.start()
    wait_for_share(fake_zrok)
    fake_zrok.clear_calls()
    control_server.heartbeat_actions.append(
        {"action": "move", "reason": "frontend lab-eu-1 is drained", "assignment": assignment("lab-us-1")}
    )

    agent.heartbeat()

    wait_for_share(fake_zrok, US)
    verbs = fake_zrok.verbs()
    assert verbs[verbs.index("disable") :] == [
        "disable",
        "config set",
        "enable",
        "list names",
        "create name",
        "list shares",
        "share public",
    ]
    assert ["config", "set", "apiEndpoint", US] in fake_zrok.calls()
    assert fake_zrok.shares(EU) == []
    environment = json.loads(open(agent.zrok.environment_file).read())
    assert environment["api_endpoint"] == US
    confirmation = control_server.posts("register")[-1]
    assert confirmation.token == PRINTER_TOKEN
    assert agent.assignment.frontend == "lab-us-1"


def test_move_from_dead_frontend(make_agent, control_server, fake_zrok):
    agent = make_agent()
    agent.start()
    wait_for_share(fake_zrok)
    fake_zrok.set_fail("disable", 503)
    control_server.heartbeat_actions.append(
        {"action": "move", "reason": "frontend lab-eu-1 failed", "assignment": assignment("lab-us-1")}
    )

    agent.heartbeat()

    wait_for_share(fake_zrok, US)
    assert agent.assignment.frontend == "lab-us-1"


def test_restart_share_order(make_agent, control_server, fake_zrok):
    agent = make_agent()
    agent.start()
    old = wait_for_share(fake_zrok)
    old_pid = agent.share.process.pid
    fake_zrok.clear_calls()
    control_server.heartbeat_actions.append(
        {"action": "restart_share", "reason": "public URL returned 502", "assignment": assignment()}
    )

    agent.heartbeat()

    new = wait_for_share(fake_zrok)
    assert agent.share.process.pid != old_pid
    assert "enable" not in fake_zrok.verbs()
    assert fake_zrok.verbs()[-2:] == ["list shares", "share public"]
    assert new["shareToken"] != old["shareToken"]


def test_unknown_printer_registers_again(make_agent, control_server, fake_zrok):
    agent = make_agent()
    agent.start()
    control_server.scripted["heartbeat"] = [(404, {"error": "printer_not_found", "message": "register again"})]

    agent.heartbeat()

    assert len(control_server.posts("register")) == 2
    assert agent.share.running()


# -- transient errors and backoff ---------------------------------------------------------------


def test_registration_backs_off_on_5xx(make_agent, control_server):
    unavailable = (503, {"error": "capacity_exhausted", "message": "no frontend has capacity"})
    control_server.scripted["register"] = [unavailable, unavailable, (502, {}), None]
    agent = make_agent(config={"backoff_initial_s": 1, "backoff_max_s": 300})

    agent.register()

    delays = agent.fake_sleep.delays
    assert len(delays) == 3
    assert 0.5 <= delays[0] <= 1
    assert 1 <= delays[1] <= 2
    assert 2 <= delays[2] <= 4
    assert len(control_server.posts("register")) == 4


def test_backoff_is_capped_and_jittered():
    backoff = fleet_agent.Backoff(1, 60, fleet_agent.random.Random(1))

    delays = [backoff.next_delay() for _ in range(12)]

    assert max(delays) <= 60
    assert min(delays[8:]) >= 30
    assert len(set(delays)) == len(delays)


def test_registration_backs_off_on_timeout(make_agent, control_server):
    control_server.scripted["register"] = [(0, {})]
    agent = make_agent(config={"request_timeout_s": 0.3})

    agent.register()

    assert len(agent.fake_sleep.delays) == 1
    assert len(control_server.posts("register")) == 2


def test_registration_backs_off_when_refused(make_agent, control_server):
    agent = make_agent(config={"control_url": "http://127.0.0.1:9"})
    sleep = agent.fake_sleep

    def switch_to_live_server(calls: int) -> None:
        if calls == 2:
            agent.client.base_url = control_server.url

    sleep.hook = switch_to_live_server

    agent.register()

    assert len(sleep.delays) == 2


def test_heartbeat_5xx_keeps_share(make_agent, control_server, fake_zrok):
    agent = make_agent()
    agent.start()
    share = wait_for_share(fake_zrok)
    fake_zrok.clear_calls()
    control_server.scripted["heartbeat"] = [(503, {"error": "database_unavailable", "message": "retry"})] * 3

    for _ in range(3):
        agent.heartbeat()

    assert agent.share.running()
    assert fake_zrok.shares() == [share]
    assert not {"delete share", "disable"} & set(fake_zrok.verbs())
    assert agent.next_heartbeat_delay_s is not None
    assert agent.heartbeat_backoff.attempt == 3
    assert os.path.exists(agent.zrok.environment_file)
    assert os.path.exists(agent.config.token_file)

    agent.heartbeat()

    assert agent.next_heartbeat_delay_s is None


def test_zrok_controller_outage_deletes_nothing(make_agent, control_server, fake_zrok):
    agent = make_agent()
    agent.start()
    wait_for_share(fake_zrok)
    kill_share_process(agent)
    fake_zrok.clear_calls()
    fake_zrok.set_fail("list shares", 502)
    fake_zrok.set_fail("list names", 503)

    def controller_recovers(calls: int) -> None:
        if calls == 3:
            fake_zrok.set_fail("list shares", None)
            fake_zrok.set_fail("list names", None)

    agent.fake_sleep.hook = controller_recovers

    agent.supervise_share()

    calls_during_outage = fake_zrok.verbs()[:3]
    assert calls_during_outage == ["list names"] * 3
    assert "disable" not in fake_zrok.verbs()
    assert fake_zrok.verbs().count("delete share") == 1
    assert os.path.exists(agent.zrok.environment_file)
    wait_for_share(fake_zrok)


def test_transient_zrok_errors_are_classified(make_agent, fake_zrok):
    agent = make_agent()
    agent.start()
    fake_zrok.set_fail("list shares", 503)

    with pytest.raises(fleet_agent.ZrokTransientError):
        agent.remove_stale_shares(agent.assignment)


# -- clock --------------------------------------------------------------------------------------


def test_clock_wait_until_synchronized(make_agent):
    answers = iter([False, False, True])
    agent = make_agent(clock_synchronized=lambda: next(answers))

    assert agent.wait_for_clock() is True

    assert agent.fake_sleep.delays == [5.0, 5.0]


def test_clock_wait_is_bounded(make_agent, caplog):
    now = [0.0]
    sleep = FakeSleep()
    sleep.hook = lambda _calls: now.__setitem__(0, now[0] + 5.0)
    agent = make_agent(
        config={"clock_sync_timeout_s": 60},
        sleep=sleep,
        clock_synchronized=lambda: False,
        monotonic=lambda: now[0],
    )

    with caplog.at_level(logging.INFO, logger="fleet_agent"):
        assert agent.wait_for_clock() is False

    assert len(sleep.delays) == 12
    assert "Gave up waiting for clock synchronisation after 60 s" in caplog.text


def test_clock_unknown_uses_plausible_date(make_agent):
    now = [1_000_000.0]
    sleep = FakeSleep()
    sleep.hook = lambda _calls: now.__setitem__(0, fleet_agent.PLAUSIBLE_TIME_FLOOR + 10)
    agent = make_agent(sleep=sleep, clock_synchronized=lambda: None, clock=lambda: now[0])

    assert agent.wait_for_clock() is True

    assert sleep.delays == [5.0]


def test_enrollment_waits_for_clock(make_agent, control_server):
    answers = iter([False, True])
    agent = make_agent(clock_synchronized=lambda: next(answers))

    agent.start()

    assert agent.fake_sleep.delays[0] == 5.0
    assert len(control_server.posts("register")) == 1


# -- secrets in logs ----------------------------------------------------------------------------


def test_logs_contain_no_secret(make_agent, control_server, fake_zrok, caplog):
    control_server.scripted["register"] = [(503, {"error": "capacity_exhausted", "message": "busy"}), None]
    with caplog.at_level(logging.DEBUG):
        agent = make_agent()
        agent.start()
        wait_for_share(fake_zrok)
        control_server.heartbeat_actions.append({"action": "move", "reason": "drain", "assignment": assignment("lab-us-1")})
        agent.heartbeat()
        fake_zrok.set_fail("enable", 503)
        os.unlink(agent.zrok.environment_file)
        agent.fake_sleep.hook = lambda _calls: fake_zrok.set_fail("enable", None)
        agent.start_share_with_retry(agent.assignment)
        wait_for_share(fake_zrok, US)

    assert "Running" in caplog.text
    for secret in SECRETS:
        assert secret not in caplog.text
    assert "***" in caplog.text


# -- configuration and identity -----------------------------------------------------------------


def test_config_from_ini(tmp_path):
    path = tmp_path / "agent.conf"
    path.write_text(
        "[agent]\ncontrol_url = https://control.fleet.test:8443\nprinter_id = printer-01\n"
        "enrollment_token = secret\nlatitude = 50.1\nlongitude = 8.7\n"
    )

    config = fleet_agent.load_config(str(path))

    assert config.control_url == "https://control.fleet.test:8443"
    assert config.latitude == 50.1
    assert config.token_file == "/var/lib/printer-fleet-agent/printer_token"


def test_config_from_json(tmp_path):
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"control_url": "https://c.example", "printer_id": "p1", "state_dir": "/srv/agent"}))

    config = fleet_agent.load_config(str(path))

    assert config.token_file == "/srv/agent/printer_token"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"printer_id": "p1"}, "control_url"),
        ({"control_url": "https://c.example"}, "printer_id"),
        ({"control_url": "https://c.example", "printer_id": "Printer_1"}, "printer_id"),
        ({"control_url": "https://c.example", "printer_id": "p" * 62}, "printer_id"),
        ({"control_url": "https://c.example", "printer_id": "printer-"}, "printer_id"),
        ({"control_url": "ftp://c.example", "printer_id": "p1"}, "control_url"),
        ({"control_url": "https://c.example", "printer_id": "p1", "latitude": 91}, "latitude"),
        ({"control_url": "https://c.example", "printer_id": "p1", "latitude": "north"}, "latitude"),
        ({"control_url": "https://c.example", "printer_id": "p1", "enrolment_token": "x"}, "enrolment_token"),
        ({"control_url": "https://c.example", "printer_id": "p1", "ca_file": "/nonexistent/ca.pem"}, "ca_file"),
    ],
)
def test_config_errors_name_the_field(raw, field):
    with pytest.raises(fleet_agent.ConfigError, match=field):
        fleet_agent.build_config(raw)


def test_main_exits_78_on_invalid_config(tmp_path):
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"printer_id": "p1", "enrollment_token": "do-not-print"}))

    assert fleet_agent.main(["--config", str(path)]) == fleet_agent.EXIT_CONFIG


def make_sysfs(root, serial: str, macs: dict[str, str]) -> dict[str, str]:
    (root / "net").mkdir(parents=True)
    for name, mac in macs.items():
        (root / "net" / name).mkdir()
        (root / "net" / name / "address").write_text(mac + "\n")
        if not name.startswith("veth"):
            (root / "net" / name / "device").mkdir()
    (root / "cpuinfo").write_text(f"processor\t: 0\nSerial\t\t: {serial}\n")
    (root / "machine-id").write_text("cloned-machine-id\n")
    return {
        "cpuinfo_path": str(root / "cpuinfo"),
        "dmi_uuid_path": str(root / "no-dmi"),
        "net_path": str(root / "net"),
        "machine_id_path": str(root / "machine-id"),
    }


def test_hardware_id_differs_on_cloned_images(tmp_path):
    first = make_sysfs(tmp_path / "a", "10000000abcdef01", {"eth0": "dc:a6:32:00:00:01"})
    second = make_sysfs(tmp_path / "b", "10000000abcdef02", {"eth0": "dc:a6:32:00:00:02"})

    first_id = fleet_agent.compute_hardware_id(**first)
    second_id = fleet_agent.compute_hardware_id(**second)

    assert first_id != second_id
    assert len(first_id) == 64


def test_hardware_id_ignores_virtual_interfaces(tmp_path):
    plain = make_sysfs(tmp_path / "a", "1", {"eth0": "dc:a6:32:00:00:01"})
    with_veth = make_sysfs(tmp_path / "b", "1", {"eth0": "dc:a6:32:00:00:01", "veth9": "02:00:00:00:00:09"})

    assert fleet_agent.compute_hardware_id(**plain) == fleet_agent.compute_hardware_id(**with_veth)


def test_moonraker_key_missing_database(tmp_path):
    assert fleet_agent.read_moonraker_api_key(str(tmp_path)) == ""


def test_redact_hides_every_secret():
    shown = fleet_agent.redact(["zrok2", "enable", ACCOUNT_TOKEN_EU, "--basic-auth", "u:pw"], [ACCOUNT_TOKEN_EU, "pw"])

    assert shown == "zrok2 enable *** --basic-auth u:***"


# -- failures that keep the heartbeat loop running ----------------------------------------------


def test_failed_share_reported_in_heartbeat(make_agent, control_server, fake_zrok):
    agent = make_agent()
    agent.start()
    wait_for_share(fake_zrok)
    kill_share_process(agent)
    fake_zrok.set_fail("list shares", 503)

    agent.supervise_share()
    agent.heartbeat()

    assert len(agent.fake_sleep.delays) == fleet_agent.LOOP_SHARE_ATTEMPTS - 1
    assert control_server.posts("heartbeat")[-1].body["share_state"] == "failed"
    assert "delete share" not in fake_zrok.verbs()


def test_move_confirmed_while_new_share_fails(make_agent, control_server, fake_zrok):
    agent = make_agent()
    agent.start()
    wait_for_share(fake_zrok)
    fake_zrok.set_fail("enable", 503)
    control_server.heartbeat_actions.append({"action": "move", "reason": "drain", "assignment": assignment("lab-us-1")})

    agent.heartbeat()

    assert control_server.posts("register")[-1].token == PRINTER_TOKEN
    assert agent.assignment.frontend == "lab-us-1"
    assert agent.share_state() == "failed"

    fake_zrok.set_fail("enable", None)
    agent.supervise_share()

    wait_for_share(fake_zrok, US)
    assert agent.share.running()


def test_rotated_moonraker_key_registers_again(make_agent, control_server, fake_zrok, moonraker_data):
    agent = make_agent()
    agent.start()
    agent.moonraker_api_key = "stale-key"
    control_server.moonraker_status = 401

    agent.heartbeat()

    registrations = control_server.posts("register")
    assert len(registrations) == 2
    assert registrations[-1].body["moonraker_api_key"] == MOONRAKER_API_KEY


def test_status_file_tracks_registration(make_agent, fake_zrok):
    agent = make_agent()

    agent.start()
    wait_for_share(fake_zrok)
    agent.write_status(registered=True)
    running = json.loads(open(agent.status_file).read())
    agent.shutdown()
    stopped = json.loads(open(agent.status_file).read())

    assert running["registered"] is True
    assert running["share_state"] == "active"
    assert running["frontend"] == "lab-eu-1"
    assert running["public_url"] == "https://p-printer-01.lab-eu.fleet.test"
    assert stopped["registered"] is False
    assert stopped["share_state"] == "none"
    text = open(agent.status_file).read()
    for secret in SECRETS:
        assert secret not in text


# -- zrok controller API ------------------------------------------------------------------------


@pytest.fixture
def zrok_controller_api():
    """A loopback HTTP server in place of a zrok controller's /api/v2/disable, with a scripted status."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import threading

    received: list[dict] = []
    status = {"code": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            received.append(
                {
                    "path": self.path,
                    "token": self.headers.get("X-TOKEN"),
                    "content_type": self.headers.get("Content-Type"),
                    "body": json.loads(self.rfile.read(length) or b"{}"),
                }
            )
            self.send_response(status["code"])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received, status
    server.shutdown()
    server.server_close()


def test_disable_environment_request(zrok_controller_api):
    url, received, _status = zrok_controller_api

    fleet_agent.ZrokController(timeout_s=2).disable_environment(url + "/", ACCOUNT_TOKEN_EU, "zOld123")

    assert received == [
        {
            "path": "/api/v2/disable",
            "token": ACCOUNT_TOKEN_EU,
            "content_type": "application/zrok.v1+json",
            "body": {"identity": "zOld123"},
        }
    ]


@pytest.mark.parametrize(
    ("code", "error"),
    [(503, "ZrokTransientError"), (502, "ZrokTransientError"), (401, "ZrokError")],
)
def test_disable_environment_errors(zrok_controller_api, code, error):
    url, _received, status = zrok_controller_api
    status["code"] = code

    with pytest.raises(getattr(fleet_agent, error)) as raised:
        fleet_agent.ZrokController(timeout_s=2).disable_environment(url, ACCOUNT_TOKEN_EU, "zOld123")

    assert type(raised.value) is getattr(fleet_agent, error)
    assert f"HTTP {code}" in str(raised.value)
    assert ACCOUNT_TOKEN_EU not in str(raised.value)
