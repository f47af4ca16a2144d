"""Failover and drain: printers leave a failed or draining frontend and stay reachable.

These checks disturb the fleet, so they run after every other lab test (see tests/conftest.py)
and put the frontend back into service when they finish.
"""

from __future__ import annotations

import collections
import threading
import time

import httpx
import pytest

from tests.e2e import fleet
from tests.lab import topology

pytestmark = pytest.mark.lab

# Units of a frontend as the zrok_frontend role installs them, plus its TLS reverse proxy.
FRONTEND_UNITS = ["caddy", "zrok2-frontend", "zrok2-health", "zrok2-controller", "ziti-router", "ziti-controller"]
CONTROL_SERVER_UNIT = "printer-fleet-control"  # as playbooks/control_server.yml installs it

# Bounds, in seconds. Failover: the control server needs a few frontend probes (15 s apart) to
# call the frontend failed, then each printer learns of its move at its next heartbeat (30 s)
# and needs a few seconds to enable and share on the new instance; a control server restart
# adds its start time.
FAILOVER_BOUND = 240.0
# Drain: moves go in batches, each printer stays reachable on the old frontend until its new
# share is up, so the outage of one printer is the time between its two shares.
DRAIN_BOUND = 300.0
DRAIN_MAX_OUTAGE = 60.0
# A restarted frontend is healthy again after a few consecutive successful probes, 15 s apart.
FRONTEND_RECOVERY_BOUND = 180.0


def frontend_of(printers: list[dict]) -> dict[str, str | None]:
    return {p["printer_id"]: p.get("frontend") for p in printers}


def busiest_frontend(lab) -> str:
    counts = collections.Counter(frontend_of(fleet.wait_for_control_server(lab)).values())
    return max((name for name in counts if name), key=lambda name: counts[name])


def set_frontend_units(lab, frontend: str, action: str) -> None:
    script = "; ".join(f"systemctl {action} {unit}" for unit in FRONTEND_UNITS)
    lab.ssh(frontend, script, timeout=120)


def assert_each_printer_once(printers: list[dict]) -> None:
    ids = [p["printer_id"] for p in printers]
    assert sorted(ids) == sorted(p.name for p in topology.PRINTERS), f"printers known: {ids}"
    urls = [p["public_url"] for p in printers]
    assert len(set(urls)) == len(urls), f"public URLs are not unique: {urls}"


def all_moved_and_answering(lab, moved: list[str], away_from: str) -> bool:
    for printer_id in moved:
        access = fleet.printer_access(lab, printer_id)
        if access.get("frontend") in (None, away_from) or not fleet.answers_as(lab, access, printer_id):
            return False
    return True


def test_failover_moves_printers_of_failed_frontend(lab):
    failed = busiest_frontend(lab)
    carried = [pid for pid, name in frontend_of(fleet.printers(lab)).items() if name == failed]
    assert carried, "no printer is assigned to any frontend"

    set_frontend_units(lab, failed, "stop")
    try:
        # Restart the control server while it detects the failure and orders the moves.
        time.sleep(20)
        restart = lab.ssh(topology.CONTROL.name, f"systemctl restart {CONTROL_SERVER_UNIT}")
        assert restart.returncode == 0, restart.stderr

        moved = fleet.wait_until(lambda: all_moved_and_answering(lab, carried, failed), FAILOVER_BOUND, 5)
        printers = fleet.wait_for_control_server(lab)
    finally:
        set_frontend_units(lab, failed, "start")

    assert moved, (f"within {FAILOVER_BOUND:.0f} s not every printer of {failed} was assigned elsewhere "
                   f"and answering: {frontend_of(fleet.printers(lab))}")
    assert_each_printer_once(printers)


class _OutageRecorder:
    """Polls each printer's current public URL from client-1 and records its longest outage."""

    def __init__(self, lab, printer_ids: list[str]):
        self.lab = lab
        self.printer_ids = printer_ids
        self.longest = dict.fromkeys(printer_ids, 0.0)
        self._down_since: dict[str, float | None] = dict.fromkeys(printer_ids)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for printer_id in self.printer_ids:
                try:
                    access = fleet.printer_access(self.lab, printer_id)
                except httpx.TransportError:
                    # The control server is briefly unavailable, which is no sign of a problem with the printer's state.
                    continue
                now = time.monotonic()
                if fleet.answers_as(self.lab, access, printer_id):
                    self._down_since[printer_id] = None
                else:
                    since = self._down_since[printer_id] or now
                    self._down_since[printer_id] = since
                    self.longest[printer_id] = max(self.longest[printer_id], now - since)
            self._stop.wait(1.0)


def all_frontends_healthy(lab) -> bool:
    client = lab.control_server()
    try:
        return all(frontend["healthy"] for frontend in client.frontends())
    finally:
        client.close()


def test_drain_moves_printers_in_batches(lab):
    # The failover check runs first and leaves its frontend restarted; a drain needs somewhere to go.
    assert fleet.wait_until(lambda: all_frontends_healthy(lab), FRONTEND_RECOVERY_BOUND, 5), (
        f"not every frontend was healthy within {FRONTEND_RECOVERY_BOUND:.0f} s before the drain"
    )
    # A printer that failed over away from a frontend comes back to it with a new zrok environment,
    # while its share from the earlier environment still reserves the name there. The agent disables
    # that environment through the controller API, and this drain checks that it does.
    draining = busiest_frontend(lab)
    carried = [pid for pid, name in frontend_of(fleet.printers(lab)).items() if name == draining]
    client = lab.control_server()
    try:
        with _OutageRecorder(lab, carried) as recorder:
            response = client.request("POST", f"/v1/frontends/{draining}/drain")
            assert response.status_code == 200, response.text
            moved = fleet.wait_until(lambda: all_moved_and_answering(lab, carried, draining), DRAIN_BOUND, 5)
        printers = fleet.printers(lab)
    finally:
        client.request("POST", f"/v1/frontends/{draining}/undrain")
        client.close()

    assert moved, f"within {DRAIN_BOUND:.0f} s not every printer left {draining}: {frontend_of(printers)}"
    assert_each_printer_once(printers)
    too_long = {pid: round(s) for pid, s in recorder.longest.items() if s > DRAIN_MAX_OUTAGE}
    assert too_long == {}, f"printers unreachable for longer than {DRAIN_MAX_OUTAGE:.0f} s during the drain"
