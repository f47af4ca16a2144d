"""The printer_agent role and the printer playbooks: lint, syntax, argument specs and the tasks that
can run on the test machine itself (archive install on the controller, the Moonraker include).

Tasks that need a printer (systemd units, the running agent) are checked by the testinfra suite
tests/testinfra/test_printer_agent.py against real hosts.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "printer_agent"
BIN = Path(sys.executable).parent
GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armv7", "armv6l": "armv6"}[platform.machine()]

sys.path.insert(0, str(ROLE / "filter_plugins"))
from printer_agent import printer_agent_unsafe_trusted_clients  # noqa: E402


def run_playbook(tmp_path: Path, plays: list, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
    environment = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
        "ANSIBLE_STDOUT_CALLBACK": "default",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        **(env or {}),
    }
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", str(playbook), *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=600,
    )


def recap(output: str) -> dict[str, int]:
    line = next(line for line in output.splitlines() if line.startswith("localhost") and "ok=" in line)
    return {key: int(value) for key, value in (part.split("=") for part in line.split()[2:])}


# -- lint and syntax ----------------------------------------------------------------------------


def test_ansible_lint_production_profile():
    result = subprocess.run(
        [str(BIN / "ansible-lint"), "--profile", "production", "roles/printer_agent", "playbooks/printers.yml"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
        timeout=900,
    )

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("playbook", ["printers.yml", "site.yml"])
def test_playbook_syntax(playbook):
    imported = ["frontends.yml", "control_server.yml"] if playbook == "site.yml" else []
    missing = [name for name in imported if not (REPO / "playbooks" / name).exists()]
    if missing:
        pytest.skip(f"site.yml imports {', '.join(missing)}, which this checkout does not contain yet")

    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "--syntax-check", "-i", "localhost,", f"playbooks/{playbook}"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
        timeout=300,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def inventory_of_printers(tmp_path: Path, count: int) -> Path:
    inventory = tmp_path / "hosts.yml"
    hosts = {f"printer-{n:02d}": {"ansible_connection": "local"} for n in range(1, count + 1)}
    inventory.write_text(yaml.safe_dump({"all": {"children": {"printers": {"hosts": hosts}}}}))
    return inventory


def batches_of(tmp_path: Path, *extra_args: str, failing: str = "", expect_rc: int = 0) -> list[list[str]]:
    """Run printers.yml with the role replaced by tasks that print each batch and fail on one host."""
    play = yaml.safe_load((REPO / "playbooks" / "printers.yml").read_text())[0]
    play.pop("roles")
    play.update(become=False, gather_facts=False, tasks=[
        {
            "name": "Show the batch",
            "ansible.builtin.debug": {"msg": "BATCH {{ ansible_play_batch | join(',') }}"},
            "run_once": True,
        },
        {
            "name": "Fail like a broken release",
            "ansible.builtin.fail": {"msg": "broken release"},
            "when": f"inventory_hostname == {failing!r}",
        },
    ])
    playbook = tmp_path / "printers.yml"
    playbook.write_text(yaml.safe_dump([play], sort_keys=False))
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory_of_printers(tmp_path, 20)), str(playbook), *extra_args],
        capture_output=True,
        text=True,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_PYTHON_INTERPRETER": sys.executable},
        timeout=600,
    )
    assert result.returncode == expect_rc, result.stdout + result.stderr
    return [batch.split(",") for batch in re.findall(r"BATCH ([a-z0-9,-]+)\"?$", result.stdout, re.MULTILINE)]


def test_printers_playbook_starts_with_canary(tmp_path):
    batches = batches_of(tmp_path)

    assert [len(batch) for batch in batches[:3]] == [1, 2, 5]
    assert sum(len(batch) for batch in batches) == 20


def test_printers_playbook_batches_overridable(tmp_path):
    batches = batches_of(tmp_path, "-e", json.dumps({"fleet_printer_serial": [10]}))

    assert [len(batch) for batch in batches] == [10, 10]


def test_printers_playbook_stops_on_failures(tmp_path):
    batches = batches_of(tmp_path, failing="printer-02", expect_rc=2)

    assert batches == [["printer-01"], ["printer-02", "printer-03"]]


# -- argument specs -----------------------------------------------------------------------------


def argspec_play(**role_vars) -> list:
    return [{"name": "Validate", "hosts": "localhost", "connection": "local", "gather_facts": False,
             "roles": [{"role": "printer_agent", **role_vars}]}]


def test_argument_specs_cover_every_default():
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())

    assert sorted(set(defaults) - set(specs)) == []
    for name, spec in specs.items():
        assert spec.get("description"), f"{name} has no description"
        if not spec.get("required"):
            assert name in defaults, f"{name} has no value in defaults/main.yml"


def test_argument_specs_require_control_url(tmp_path):
    result = run_playbook(tmp_path, argspec_play(printer_agent_enrollment_token="x"), "--tags", "never-matches")

    assert result.returncode != 0
    assert "printer_agent_control_url" in result.stdout


def test_argument_specs_reject_unknown_install_method(tmp_path):
    play = argspec_play(
        printer_agent_control_url="https://control.fleet.test:8443",
        printer_agent_enrollment_token="x",
        printer_agent_install_method="curl-pipe-bash",
    )

    result = run_playbook(tmp_path, play, "--tags", "never-matches")

    assert result.returncode != 0
    assert "printer_agent_install_method" in result.stdout
    assert "repository, archive, local" in result.stdout


def test_argument_specs_accept_valid_values(tmp_path):
    play = argspec_play(
        printer_agent_control_url="https://control.fleet.test:8443",
        printer_agent_enrollment_token="secret-enrollment-token",
        printer_agent_latitude=50.1,
        printer_agent_longitude=8.7,
    )

    result = run_playbook(tmp_path, play, "--tags", "never-matches")

    assert result.returncode == 0, result.stdout
    assert "secret-enrollment-token" not in result.stdout


# -- trusted clients filter ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry", ["127.0.0.1", "127.0.0.0/8", "127.1.2.3", "::1", "::ffff:127.0.0.1", "0.0.0.0/0", "::/0", "localhost",
              "printer.local", "192.168.1.1/24"]
)
def test_unsafe_trusted_clients_rejected(entry):
    assert printer_agent_unsafe_trusted_clients(["192.168.1.0/24", entry]) == [entry]


def test_lan_trusted_clients_accepted():
    assert printer_agent_unsafe_trusted_clients(["192.168.1.0/24", "10.0.0.5", "fd00::/8"]) == []


# -- zrok2 from a release archive ---------------------------------------------------------------


@pytest.fixture
def release_dir(tmp_path):
    """A release directory like zrok's GitHub release: an archive per architecture and checksums."""
    release = tmp_path / "release"
    release.mkdir()
    name = f"zrok2_2.0.4_linux_{GO_ARCH}.tar.gz"
    payload = b"#!/bin/sh\necho 'v2.0.4 [fake]'\n"
    with tarfile.open(release / name, "w:gz") as archive:
        for member, data in (("zrok2", payload), ("LICENSE", b"Apache-2.0\n")):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            info.mode = 0o755
            archive.addfile(info, io.BytesIO(data))
    digest = hashlib.sha256((release / name).read_bytes()).hexdigest()
    (release / "checksums.sha256.txt").write_text(f"{'0' * 64}  other.tar.gz\n{digest}  {name}\n")
    return release, name, digest, payload


def install_archive_play(tmp_path: Path, **overrides) -> list:
    role_vars = {
        "printer_agent_install_method": "archive",
        "printer_agent_zrok_archive_base_url": f"file://{tmp_path / 'release'}",
        "printer_agent_binary_install_dir": str(tmp_path / "bin"),
        "printer_agent_local_cache_path": str(tmp_path / "cache"),
        "printer_agent_service_enabled": False,
        **overrides,
    }
    return [{
        "name": "Install zrok2 from an archive",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": True,
        "gather_subset": ["!all", "!min", "platform"],
        "vars": role_vars,
        "tasks": [
            {"name": "Create the bin directory", "ansible.builtin.file": {"path": str(tmp_path / "bin"), "state": "directory", "mode": "0755"}},
            {"name": "Run the archive install", "ansible.builtin.include_role": {"name": "printer_agent", "tasks_from": "install_archive.yml"}},
        ],
    }]


def test_archive_install_verifies_and_copies(tmp_path, release_dir):
    _release, _name, _digest, payload = release_dir

    first = run_playbook(tmp_path, install_archive_play(tmp_path))
    second = run_playbook(tmp_path, install_archive_play(tmp_path))

    assert first.returncode == 0, first.stdout
    assert "sha256 verified" in first.stdout
    installed = tmp_path / "bin" / "zrok2"
    assert installed.read_bytes() == payload
    assert installed.stat().st_mode & 0o777 == 0o755
    assert second.returncode == 0, second.stdout
    assert recap(second.stdout)["changed"] == 0


def test_archive_install_rejects_wrong_pin(tmp_path, release_dir):
    play = install_archive_play(tmp_path, printer_agent_zrok_archive_sha256={GO_ARCH: "ab" * 32})

    result = run_playbook(tmp_path, play)

    assert result.returncode != 0
    assert f"the expected sha256 is {'ab' * 32}" in result.stdout
    assert not (tmp_path / "bin" / "zrok2").exists()


def test_archive_install_needs_a_listed_checksum(tmp_path, release_dir):
    (tmp_path / "release" / "checksums.sha256.txt").write_text(f"{'0' * 64}  other.tar.gz\n")

    result = run_playbook(tmp_path, install_archive_play(tmp_path))

    assert result.returncode != 0
    assert "no sha256 for it is in printer_agent_zrok_archive_sha256 or checksums.sha256.txt" in result.stdout


def test_local_install_method(tmp_path, release_dir):
    release, _name, digest, payload = release_dir
    play = install_archive_play(
        tmp_path,
        printer_agent_install_method="local",
        printer_agent_zrok_local_archive_dir=str(release),
        printer_agent_zrok_checksums_name="",
        printer_agent_zrok_archive_sha256={GO_ARCH: digest},
    )

    result = run_playbook(tmp_path, play)

    assert result.returncode == 0, result.stdout
    assert (tmp_path / "bin" / "zrok2").read_bytes() == payload


# -- the Moonraker include ----------------------------------------------------------------------

OPERATOR_CONF = textwrap.dedent(
    """\
    [server]
    host: 0.0.0.0
    port: 7125

    [authorization]
    trusted_clients:
        127.0.0.1
        192.168.0.0/16
    cors_domains:
        *.local

    [update_manager]
    """
)


@pytest.fixture
def fake_systemctl(tmp_path):
    """A systemctl on PATH that records its calls and reports every unit as loaded and active."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    log = tmp_path / "systemctl.log"
    script = bin_dir / "systemctl"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {log}\n'
        'case "$1" in\n'
        '  show) printf "Id=%s\\nLoadState=loaded\\nActiveState=active\\nSubState=running\\nUnitFileState=enabled\\n" "$2" ;;\n'
        '  is-active) echo active ;;\n'
        '  is-enabled) echo enabled ;;\n'
        "esac\n"
        "exit 0\n"
    )
    script.chmod(0o755)
    return bin_dir, log


def moonraker_play(tmp_path: Path, **overrides) -> list:
    return [{
        "name": "Configure Moonraker",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "vars": {
            "printer_agent_moonraker_data_path": str(tmp_path / "printer_data"),
            "printer_agent_moonraker_trusted_clients": ["192.168.1.0/24"],
            **overrides,
        },
        "tasks": [{"name": "Run the Moonraker tasks", "ansible.builtin.include_role": {"name": "printer_agent", "tasks_from": "moonraker.yml"}}],
    }]


@pytest.fixture
def moonraker_conf(tmp_path):
    config = tmp_path / "printer_data" / "config"
    config.mkdir(parents=True)
    (config / "moonraker.conf").write_text(OPERATOR_CONF)
    return config / "moonraker.conf"


def test_moonraker_include_added_once(tmp_path, moonraker_conf, fake_systemctl):
    bin_dir, log = fake_systemctl
    env = {"PATH": f"{bin_dir}:{BIN}:{os.environ['PATH']}"}

    first = run_playbook(tmp_path, moonraker_play(tmp_path), env=env)
    restarts_after_first = log.read_text().count("restart moonraker") if log.exists() else 0
    second = run_playbook(tmp_path, moonraker_play(tmp_path), env=env)

    assert first.returncode == 0, first.stdout
    text = moonraker_conf.read_text()
    assert text.startswith(OPERATOR_CONF)
    assert text[len(OPERATOR_CONF):].strip() == "[include printer-fleet.conf]"
    include = (moonraker_conf.parent / "printer-fleet.conf").read_text()
    assert "[authorization]" in include
    assert "    192.168.1.0/24" in include
    assert "127.0.0.1" not in include.split("[authorization]")[1]
    assert restarts_after_first == 1
    assert second.returncode == 0, second.stdout
    assert recap(second.stdout)["changed"] == 0
    assert log.read_text().count("restart moonraker") == 1


def test_moonraker_restarted_when_include_changes(tmp_path, moonraker_conf, fake_systemctl):
    bin_dir, log = fake_systemctl
    env = {"PATH": f"{bin_dir}:{BIN}:{os.environ['PATH']}"}
    run_playbook(tmp_path, moonraker_play(tmp_path), env=env)

    result = run_playbook(tmp_path, moonraker_play(tmp_path, printer_agent_moonraker_trusted_clients=[]), env=env)

    assert result.returncode == 0, result.stdout
    assert log.read_text().count("restart moonraker") == 2


def test_moonraker_authorization_after_include_fails(tmp_path, moonraker_conf, fake_systemctl):
    bin_dir, _log = fake_systemctl
    moonraker_conf.write_text(
        OPERATOR_CONF + "[include printer-fleet.conf]\n\n[authorization]\ntrusted_clients:\n    127.0.0.1\n"
    )

    result = run_playbook(tmp_path, moonraker_play(tmp_path), env={"PATH": f"{bin_dir}:{BIN}:{os.environ['PATH']}"})

    assert result.returncode != 0
    assert "Move [include printer-fleet.conf] to the end of the file" in result.stdout


def test_moonraker_conf_missing_fails(tmp_path, fake_systemctl):
    bin_dir, _log = fake_systemctl

    result = run_playbook(tmp_path, moonraker_play(tmp_path), env={"PATH": f"{bin_dir}:{BIN}:{os.environ['PATH']}"})

    assert result.returncode != 0
    assert "Install Moonraker first" in result.stdout


def test_agent_config_template_is_valid_json(tmp_path):
    overrides = {
        "printer_agent_control_url": "https://control.fleet.test:8443",
        "printer_agent_enrollment_token": "enroll-secret",
        "printer_agent_install_method": "archive",
    }
    play = [{
        "name": "Render the agent config",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "vars_files": [str(ROLE / "defaults" / "main.yml"), str(ROLE / "vars" / "main.yml")],
        "tasks": [
            {"name": "Render", "ansible.builtin.template": {"src": str(ROLE / "templates" / "agent.json.j2"), "dest": str(tmp_path / "agent.json"), "mode": "0600"},
             "no_log": True},
        ],
    }]

    result = run_playbook(tmp_path, play, "-e", json.dumps(overrides))

    assert result.returncode == 0, result.stdout
    assert "enroll-secret" not in result.stdout
    config = json.loads((tmp_path / "agent.json").read_text())
    assert config["printer_id"] == "localhost"
    assert config["zrok2_path"] == "/usr/local/bin/zrok2"
    assert config["enrollment_token"] == "enroll-secret"
    assert config["token_file"] == "/var/lib/printer-fleet-agent/printer_token"
    assert config["latitude"] is None

    sys.path.insert(0, str(ROLE / "files"))
    import fleet_agent

    assert fleet_agent.build_config(config).control_url == "https://control.fleet.test:8443"


def test_moonraker_check_mode_changes_nothing(tmp_path, moonraker_conf, fake_systemctl):
    bin_dir, log = fake_systemctl

    result = run_playbook(tmp_path, moonraker_play(tmp_path), "--check", env={"PATH": f"{bin_dir}:{BIN}:{os.environ['PATH']}"})

    assert result.returncode == 0, result.stdout
    assert recap(result.stdout)["changed"] >= 2
    assert moonraker_conf.read_text() == OPERATOR_CONF
    assert not (moonraker_conf.parent / "printer-fleet.conf").exists()
    assert "restart" not in (log.read_text() if log.exists() else "")


def test_archive_install_check_mode(tmp_path, release_dir):
    result = run_playbook(tmp_path, install_archive_play(tmp_path), "--check")

    assert result.returncode == 0, result.stdout
    assert not (tmp_path / "bin" / "zrok2").exists()
