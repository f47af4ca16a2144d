"""The fleet agent as systemd runs it: a separate process started from its config file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from conftest import AGENT_PATH, FAKE_ZROK, SECRETS
from test_fleet_agent import wait_for_share, wait_until


def start_agent(tmp_path, control_server, moonraker_data):
    config = tmp_path / "agent.json"
    config.write_text(
        json.dumps(
            {
                "control_url": control_server.url,
                "printer_id": "printer-01",
                "enrollment_token": SECRETS[0],
                "zrok2_path": str(FAKE_ZROK),
                "moonraker_url": control_server.url,
                "moonraker_data_path": str(moonraker_data),
                "state_dir": str(tmp_path / "state"),
                "clock_sync_timeout_s": 0,
            }
        )
    )
    log = open(tmp_path / "agent.log", "a")
    process = subprocess.Popen(
        [sys.executable, str(AGENT_PATH), "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=os.environ.copy(),
    )
    return process


def test_agent_survives_sigkill_and_stops_cleanly(tmp_path, control_server, fake_zrok, moonraker_data):
    first = start_agent(tmp_path, control_server, moonraker_data)
    try:
        stale = wait_for_share(fake_zrok)
    finally:
        # SIGKILL leaves the share process and its share behind, as a power cut leaves the share.
        first.kill()
        first.wait()
    os.kill(stale["pid"], signal.SIGKILL)

    second = start_agent(tmp_path, control_server, moonraker_data)
    try:
        wait_until(
            lambda: [s["shareToken"] for s in fake_zrok.shares()] not in ([], [stale["shareToken"]]),
            "a new share replacing the stale one",
        )
        fresh = fake_zrok.shares()
    finally:
        second.send_signal(signal.SIGTERM)
        exit_status = second.wait(timeout=60)

    assert len(fresh) == 1
    # The same public URL as before the kill, so operators and probes keep working.
    assert fresh[0]["frontendEndpoints"] == stale["frontendEndpoints"]
    assert ["delete", "share", stale["shareToken"]] in fake_zrok.calls()
    # One share start after the stale share was removed: no loop of 409 shareConflict.
    assert fake_zrok.verbs().count("share public") <= 2
    assert [r.token for r in control_server.posts("register")] == [SECRETS[0], SECRETS[1]]
    assert exit_status == 0
    assert fake_zrok.shares() == []
    log = (tmp_path / "agent.log").read_text()
    assert "Fleet agent stopped" in log
    for secret in SECRETS:
        assert secret not in log
