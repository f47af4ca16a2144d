"""Batched rollouts, as docs/operations/upgrade-zrok.md describes them: the real plays of
frontends.yml and printers.yml with their roles replaced by tasks that record each batch."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.controlserver.conftest import REPO

BIN = Path(sys.executable).parent


def run_batches(tmp_path: Path, playbook: str, group: str, hosts: list[str], *extra_args: str,
                failing: str = "") -> tuple[int, list[list[str]]]:
    """Run the playbook's play, with its serial and max_fail_percentage, on local hosts."""
    play = yaml.safe_load((REPO / "playbooks" / playbook).read_text())[0]
    play.pop("roles")
    play.update(become=False, gather_facts=False, tasks=[
        {"name": "Show the batch", "ansible.builtin.debug": {"msg": "BATCH {{ ansible_play_batch | join(',') }}"},
         "run_once": True},
        {"name": "Fail like a broken release", "ansible.builtin.fail": {"msg": "broken release"},
         "when": f"inventory_hostname == {failing!r}"},
    ])
    copy = tmp_path / playbook
    copy.write_text(yaml.safe_dump([play], sort_keys=False))
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {group: {
        "hosts": {name: {"ansible_connection": "local"} for name in hosts}}}}}))
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), str(copy), *extra_args],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_PYTHON_INTERPRETER": sys.executable},
    )
    batches = [batch.split(",") for batch in re.findall(r"BATCH ([a-z0-9,-]+)\"?$", result.stdout, re.MULTILINE)]
    return result.returncode, batches


def test_frontends_one_at_a_time(tmp_path):
    frontends = ["eu-central-1", "eu-central-2", "us-east-1"]

    code, batches = run_batches(tmp_path, "frontends.yml", "zrok_frontends", frontends)

    assert code == 0
    assert batches == [["eu-central-1"], ["eu-central-2"], ["us-east-1"]]


def test_frontend_failure_stops_run(tmp_path):
    frontends = ["eu-central-1", "eu-central-2", "us-east-1"]

    code, batches = run_batches(tmp_path, "frontends.yml", "zrok_frontends", frontends, failing="eu-central-1")

    assert code == 2
    assert batches == [["eu-central-1"]]


def test_printers_guide_override(tmp_path):
    printers = [f"printer-{n:04d}" for n in range(1, 41)]
    override = json.dumps({"fleet_printer_serial": [1, 5, "50%"], "fleet_printer_max_fail_percentage": 0})

    code, batches = run_batches(tmp_path, "printers.yml", "printers", printers, "-e", override)

    assert code == 0
    assert [len(batch) for batch in batches] == [1, 5, 20, 14]


def test_printers_default_batches_and_threshold(tmp_path):
    printers = [f"printer-{n:04d}" for n in range(1, 41)]

    code, batches = run_batches(tmp_path, "printers.yml", "printers", printers)
    stopped_code, stopped = run_batches(tmp_path, "printers.yml", "printers", printers, failing="printer-0001")

    assert code == 0
    assert [len(batch) for batch in batches] == [1, 4, 10, 10, 10, 5]
    # The canary is a batch of one, so its failure is 100 % of the batch, above the 10 % limit.
    assert stopped_code == 2
    assert stopped == [["printer-0001"]]
