"""Configure the booted lab with the real playbooks and print the table of printers.

Playbooks run through ansible-runner, which streams Ansible's events: each task prints one line
and every changed, failed or unreachable host one more. Secrets reach Ansible as an extra-vars
file outside the repository and never appear in this output.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

import ansible_runner

from tests.lab import inventory, releases, topology
from tests.lab.api import ControlServerClient

PLAYBOOKS_DIR = topology.REPO_ROOT / "playbooks"
RUNNER_DIR = topology.STATE_DIR / "runner"
# Order matters: printers need their frontends and an enrollment token from the control server.
FRONTENDS_PLAYBOOK = "frontends.yml"
CONTROL_PLAYBOOK = "control_server.yml"
PRINTERS_PLAYBOOK = "printers.yml"
LAB_CA_FILE = topology.STATE_DIR / "pki" / "ca.crt"
ASSIGNMENT_TIMEOUT = 180.0
# Written once the playbooks succeeded, so a test session can reuse a lab that `make lab` left.
DEPLOYED_MARKER = topology.STATE_DIR / "deployed"


@dataclasses.dataclass
class PlaybookResult:
    playbook: str
    status: str
    rc: int
    changed: dict[str, int]
    failed_hosts: list[str]
    # "host: task: message" for each failure, so an error raised later can name the task.
    failures: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.failed_hosts


class _ProgressPrinter:
    """ansible-runner event handler: one line per task, one per changed or failed host."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.failures: list[str] = []

    def _failed(self, data: dict, label: str, message: str) -> None:
        message = str(message)[:500]
        print(f"               {data.get('host')}: {label}: {message}", flush=True)
        self.failures.append(f"{data.get('host')}: {data.get('task', '')}: {message}")

    def __call__(self, event: dict) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data", {})
        elapsed = time.monotonic() - self.started
        if kind == "playbook_on_play_start":
            print(f"  [{elapsed:5.0f}s] PLAY {data.get('play', '')}", flush=True)
        elif kind == "playbook_on_task_start":
            print(f"  [{elapsed:5.0f}s]   {data.get('task', '')}", flush=True)
        elif kind == "runner_on_ok" and data.get("res", {}).get("changed"):
            print(f"               {data.get('host')}: changed", flush=True)
        elif kind == "runner_item_on_failed":
            # A loop task's own failure only says "One or more items failed"; the item says why.
            result = data.get("res") or {}
            if result.get("_ansible_no_log") or "censored" in result:
                message = "the output is hidden because the task handles secrets (no_log)"
            else:
                label = result.get("_ansible_item_label", result.get("item", ""))
                message = f"item {str(label)[:80]}: {result.get('msg') or result.get('stderr') or 'no message'}"
            self._failed(data, "FAILED", message)
        elif kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
            result = data.get("res") or {}
            message = result.get("msg") or result.get("stderr") or "no message"
            if result.get("_ansible_no_log") or "censored" in result:
                message = "the output is hidden because the task handles secrets (no_log)"
            self._failed(data, "UNREACHABLE" if kind == "runner_on_unreachable" else "FAILED", message)
        return True  # keep the event in the artifacts as well


def ensure_ansible_on_path() -> None:
    """Put this interpreter's bin directory on PATH: ansible-runner and testinfra look up the
    ansible-playbook and ansible-inventory commands there, even when the venv is not activated."""
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def run_playbook(name: str, extra_vars: dict | None = None, limit: str | None = None,
                 quiet_progress: bool = False) -> PlaybookResult:
    """Run one playbook from playbooks/ against the lab inventory."""
    playbook = PLAYBOOKS_DIR / name
    if not playbook.exists():
        raise FileNotFoundError(f"playbook not found: {playbook}")
    RUNNER_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    ensure_ansible_on_path()
    cmdline = f"--extra-vars @{inventory.SECRETS_FILE}"
    print(f"lab: ansible-playbook {name}", flush=True)
    progress = None if quiet_progress else _ProgressPrinter()
    with releases.serve():
        runner = _run(playbook, cmdline, extra_vars, limit, progress)
    stats = runner.stats or {}
    failed = sorted(set(stats.get("failures", {})) | set(stats.get("dark", {})))
    result = PlaybookResult(name, runner.status, runner.rc, dict(stats.get("changed", {})), failed,
                            progress.failures if progress else [])
    changed_total = sum(result.changed.values())
    print(f"lab: {name}: {runner.status}, {changed_total} changes"
          + (f", failed on {', '.join(failed)}" if failed else ""), flush=True)
    return result


def _run(playbook: Path, cmdline: str, extra_vars: dict | None, limit: str | None,
         progress: _ProgressPrinter | None):
    return ansible_runner.run(
        private_data_dir=str(RUNNER_DIR),
        playbook=str(playbook),
        inventory=str(inventory.INVENTORY_FILE),
        cmdline=cmdline,
        extravars=extra_vars or {},
        limit=limit,
        envvars={"ANSIBLE_CONFIG": str(topology.REPO_ROOT / "ansible.cfg"),
                 "ANSIBLE_ROLES_PATH": str(topology.REPO_ROOT / "roles"),
                 "ANSIBLE_NOCOLOR": "1"},
        event_handler=progress,
        quiet=True,
        rotate_artifacts=4,
    )


def control_server_client() -> ControlServerClient:
    return ControlServerClient(LAB_CA_FILE, inventory.read_secrets()["fleet_admin_token"])


def create_enrollment_token() -> None:
    """Create an enrollment token through the control server API and keep it with the lab secrets."""
    client = control_server_client()
    try:
        token = client.create_enrollment_token("lab printers")
    finally:
        client.close()
    inventory.update_secrets(printer_agent_enrollment_token=token)
    print("lab: created an enrollment token for the printers (kept in the lab secrets file)", flush=True)


def wait_for_shares(timeout: float = ASSIGNMENT_TIMEOUT) -> list[dict]:
    """Wait until every lab printer reports an active share at a public URL; return the printers.

    Returns the current list when `timeout` passes first, so the table shows what is missing.
    """
    client = control_server_client()
    deadline = time.monotonic() + timeout
    expected = {p.name for p in topology.PRINTERS}
    print(f"lab: waiting up to {timeout:.0f} s for every printer to share Moonraker", flush=True)
    try:
        while True:
            printers = client.printers()
            sharing = {p["printer_id"] for p in printers if p.get("public_url") and p.get("share_state") == "active"}
            if expected <= sharing or time.monotonic() > deadline:
                return printers
            time.sleep(2)
    finally:
        client.close()


def health(printer: dict) -> str:
    """Summarise what the agent reports and what the control server's probes found."""
    problems = []
    if printer.get("share_state") != "active":
        problems.append(f"share {printer.get('share_state') or 'unknown'}")
    if printer.get("moonraker_state") != "ok":
        problems.append(f"moonraker {printer.get('moonraker_state') or 'unknown'}")
    if printer.get("klippy_state") != "ready":
        problems.append(f"klippy {printer.get('klippy_state') or 'unknown'}")
    if printer.get("probe_failures"):
        problems.append(f"{printer['probe_failures']} failed probes of the public URL")
    return "ok" if not problems else ", ".join(problems)


def print_printer_table(printers: list[dict]) -> None:
    known = {p["printer_id"] for p in printers}
    print(f"\n{'printer':<12} {'frontend':<10} {'public URL':<44} health")
    for printer in sorted(printers, key=lambda p: p["printer_id"]):
        print(f"{printer['printer_id']:<12} {printer.get('frontend') or '-':<10} "
              f"{printer.get('public_url') or '-':<44} {health(printer)}")
    for missing in sorted({p.name for p in topology.PRINTERS} - known):
        print(f"{missing:<12} {'-':<10} {'-':<44} not registered with the control server")
    print(flush=True)


def prepare_releases() -> None:
    """Pack the stand-in release archives and point the roles' archive variables at them."""
    manifest = releases.build()
    inventory.write_group_vars(
        "releases", releases.role_variables(manifest),
        "Install zrok2 and ziti from release archives, as in production, but from the lab's\n"
        f"archives of the zrok and OpenZiti stand-ins served on {releases.BASE_URL} while playbooks run.")
    print(f"lab: packed the stand-in release archives (zrok {manifest['zrok']['version']}, "
          f"ziti {manifest['ziti']['version']}) in {releases.RELEASES_DIR}", flush=True)


def playbook_failed(result: PlaybookResult) -> RuntimeError:
    """Return an error that names the failed tasks, because a test log cut short may not show the task lines."""
    if not result.failures:
        return RuntimeError(f"{result.playbook} failed ({result.status}); see the task lines above")
    first_failures = "; ".join(result.failures[:3])
    more = f" (and {len(result.failures) - 3} more failures above)" if len(result.failures) > 3 else ""
    return RuntimeError(f"{result.playbook} failed ({result.status}): {first_failures}{more}")


def deploy_all() -> list[PlaybookResult]:
    """Run frontends, control server and printers playbooks; raise on the first failure."""
    prepare_releases()
    results = []
    for name in (FRONTENDS_PLAYBOOK, CONTROL_PLAYBOOK):
        results.append(run_playbook(name))
        if not results[-1].ok:
            raise playbook_failed(results[-1])
    create_enrollment_token()
    results.append(run_playbook(PRINTERS_PLAYBOOK))
    if not results[-1].ok:
        raise playbook_failed(results[-1])
    return results


def deploy_and_report() -> None:
    started = time.monotonic()
    deploy_all()
    DEPLOYED_MARKER.write_text("")
    printers = wait_for_shares()
    print(f"lab: configured in {time.monotonic() - started:.0f} s")
    print_printer_table(printers)
