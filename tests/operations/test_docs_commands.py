"""The operator guide's commands, checked offline so the guide cannot drift from the code.

Every shell line in a fenced block of docs/operations/*.md is parsed. `python -m controlserver`
and `python -m infra.inventory` lines go through their own argument parsers, `ansible-playbook`
and `ansible` lines through ansible-core's parsers. Playbooks must exist, and ad-hoc module options
must be options of that module. `pulumi config set` keys must be keys the program reads.
Variables, settings and metrics named in backticks must exist in the code, and links must resolve.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from controlserver.cli import _parser as controlserver_parser
from controlserver.core.settings import Settings
from infra.config import KNOWN_KEYS, PROVIDER_CREDENTIAL_KEYS
from infra.inventory import build_parser as inventory_parser
from tests.controlserver.conftest import REPO

GUIDE = REPO / "docs" / "operations"
PAGES = sorted(GUIDE.glob("*.md"))
BIN = Path(sys.executable).parent

# Tools the guide may use without a parser of their own here. A new tool must be added on purpose.
OTHER_TOOLS = {
    "ansible-inventory", "ansible-vault", "createdb", "curl", "git", "install", "journalctl", "mkdir",
    "mv", "openssl", "pg_restore", "sh", "systemctl",
}
PULUMI_SUBCOMMANDS = {"config", "destroy", "login", "preview", "stack", "up"}
# Environment variables read by the operator commands rather than by Settings.
CLIENT_VARIABLES = {"FLEET_SERVER", "FLEET_ADMIN_TOKEN", "FLEET_DATABASE_URL"}


def shell_lines(page: Path) -> list[str]:
    """Return the commands of the page's ```sh blocks, with continuation lines joined."""
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", page.read_text(), re.MULTILINE | re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip():
                commands.append(line.strip())
    return commands


def words_of(command: str) -> list[str]:
    """Split a command as the shell would, with each $(...) as one placeholder word part."""
    words = shlex.split(re.sub(r"\$\([^()]*\)", "SUBSTITUTED", command), comments=True)
    while words and (re.fullmatch(r"[A-Z_]+=.*", words[0]) or words[0] == "sudo"):
        words = words[3:] if words[0] == "sudo" and words[1:2] == ["-u"] else words[1:]
    if words[:1] == ["watch"]:
        words = words[3:] if words[1:2] == ["-n"] else words[1:]
    return words


def all_commands() -> list[tuple[str, list[str]]]:
    return [(f"{page.name}: {line}", words_of(line)) for page in PAGES for line in shell_lines(page)]


COMMANDS = all_commands()


def commands_of(program: str) -> list[tuple[str, list[str]]]:
    return [(where, words) for where, words in COMMANDS if words and words[0] == program]


def strict(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Turn off option abbreviations, so a misspelt option in the guide fails the parse."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                strict(subparser)
    return parser


def python_module_commands(module: str) -> list[tuple[str, list[str]]]:
    return [(where, words[3:]) for where, words in COMMANDS
            if len(words) > 2 and words[0].endswith(("python", "python3")) and words[1:3] == ["-m", module]]


def test_guide_has_commands():
    assert len(PAGES) == 8
    assert len(python_module_commands("controlserver")) >= 20
    assert len(commands_of("ansible-playbook")) >= 15


def test_every_command_known():
    unknown = []
    for where, words in COMMANDS:
        program = words[0]
        known = (program in OTHER_TOOLS or program in {"ansible", "ansible-playbook", "pulumi", "pytest"}
                 or (program.endswith(("python", "python3")) and words[1:3] in (["-m", "controlserver"],
                                                                               ["-m", "infra.inventory"])))
        if not known:
            unknown.append(where)
    assert unknown == []


@pytest.mark.parametrize("where,arguments", python_module_commands("controlserver"),
                         ids=lambda value: value if isinstance(value, str) else None)
def test_controlserver_command_parses(where, arguments, capsys):
    try:
        parsed = strict(controlserver_parser()).parse_args(arguments)
    except SystemExit:
        pytest.fail(f"{where}: rejected by the CLI: {capsys.readouterr().err}")
    assert parsed.command, where


@pytest.mark.parametrize("where,arguments", python_module_commands("infra.inventory"),
                         ids=lambda value: value if isinstance(value, str) else None)
def test_inventory_command_parses(where, arguments, capsys):
    try:
        parsed = strict(inventory_parser()).parse_args(arguments)
    except SystemExit:
        pytest.fail(f"{where}: rejected by the CLI: {capsys.readouterr().err}")
    assert parsed.stack or parsed.outputs, where


def test_ansible_playbook_commands_parse(capsys):
    from ansible.cli.playbook import PlaybookCLI

    for where, words in commands_of("ansible-playbook"):
        cli = PlaybookCLI(words)
        cli.init_parser()
        strict(cli.parser)
        try:
            options = cli.parser.parse_args(words[1:])
        except SystemExit:
            pytest.fail(f"{where}: rejected by ansible-playbook: {capsys.readouterr().err}")
        for playbook in options.args:
            assert (REPO / playbook).is_file(), f"{where}: no playbook {playbook}"
        for extra in options.extra_vars:
            if extra.startswith("{"):
                assert isinstance(json.loads(extra), dict), where


def adhoc_tasks() -> list[tuple[str, str, str]]:
    from ansible.cli.adhoc import AdHocCLI

    tasks = []
    for where, words in commands_of("ansible"):
        cli = AdHocCLI(words)
        cli.init_parser()
        options = cli.parser.parse_args(words[1:])
        tasks.append((where, options.module_name, options.module_args))
    return tasks


def test_ansible_adhoc_options_exist():
    from ansible.parsing.splitter import parse_kv

    tasks = adhoc_tasks()
    modules = sorted({module for _, module, _ in tasks})
    documentation = subprocess.run([str(BIN / "ansible-doc"), "--json", *modules], capture_output=True, text=True,
                                   timeout=300, check=True)
    options_by_module = {}
    for module, entry in json.loads(documentation.stdout).items():
        names = set()
        for name, option in entry["doc"]["options"].items():
            names.add(name)
            names.update(option.get("aliases", []))
        options_by_module[module] = names

    assert len(tasks) >= 6
    for where, module, arguments in tasks:
        assert module in options_by_module, f"{where}: no module {module}"
        arguments = arguments or ""
        given = json.loads(arguments) if arguments.startswith("{") else parse_kv(arguments)
        unknown = set(given) - options_by_module[module]
        assert not unknown, f"{where}: {module} has no option {sorted(unknown)}"


def test_pulumi_config_keys_exist():
    checked = 0
    for where, words in commands_of("pulumi"):
        assert words[1] in PULUMI_SUBCOMMANDS, where
        if words[1:3] != ["config", "set"]:
            continue
        rest = [word for word in words[3:] if word not in ("--secret", "--path")]
        if "--stack" in rest:
            index = rest.index("--stack")
            del rest[index:index + 2]
        key = re.sub(r"\[\d+\]$", "", rest[0])
        namespace, _, name = key.partition(":")
        if namespace == "printer-fleet":
            assert name in KNOWN_KEYS, f"{where}: unknown key {name}"
        else:
            assert key in PROVIDER_CREDENTIAL_KEYS, f"{where}: unknown key {key}"
        checked += 1
    assert checked >= 20


def test_pytest_paths_exist():
    for where, words in commands_of("pytest"):
        for word in words[1:]:
            if not word.startswith("-"):
                assert (REPO / word).exists(), f"{where}: no test file {word}"


def code_corpus() -> str:
    parts = []
    for folder in ("roles", "playbooks", "inventory"):
        for path in (REPO / folder).rglob("*"):
            if path.is_file() and path.suffix in (".yml", ".yaml", ".j2", ".py"):
                parts.append(path.read_text())
    parts.append((REPO / "controlserver" / "metrics.py").read_text())
    return "\n".join(parts)


def test_named_variables_exist():
    corpus = code_corpus()
    missing = []
    for page in PAGES:
        for name in set(re.findall(r"`((?:zrok_frontend|printer_agent|control_server|fleet)_[a-z0-9_]+)", page.read_text())):
            if name not in corpus:
                missing.append(f"{page.name}: {name}")
    assert missing == []


def test_named_settings_exist():
    missing = []
    for page in PAGES:
        for variable in set(re.findall(r"\b(FLEET_[A-Z_]+)\b", page.read_text())):
            if variable not in CLIENT_VARIABLES and variable.removeprefix("FLEET_").lower() not in Settings.model_fields:
                missing.append(f"{page.name}: {variable}")
    assert missing == []


def test_links_resolve():
    broken = []
    for page in [*PAGES, REPO / "README.md"]:
        for target in re.findall(r"\]\(([^)#]+\.md)\)", page.read_text()):
            if not (page.parent / target).is_file():
                broken.append(f"{page.name}: {target}")
    assert broken == []


def test_index_lists_every_page():
    index = (GUIDE / "README.md").read_text()
    listed = set(re.findall(r"\]\(([a-z-]+\.md)\)", index))
    assert listed == {page.name for page in PAGES if page.name != "README.md"}
    assert "docs/operations/README.md" in (REPO / "README.md").read_text()


def test_zrok_pins_match_guide():
    import yaml

    frontends = yaml.safe_load((REPO / "inventory" / "group_vars" / "zrok_frontends.yml").read_text())
    printers = yaml.safe_load((REPO / "roles" / "printer_agent" / "defaults" / "main.yml").read_text())
    guide = (GUIDE / "upgrade-zrok.md").read_text()

    pins = f"{frontends['zrok_frontend_zrok_version']}, {frontends['zrok_frontend_ziti_version']}"
    assert pins in guide
    assert f"| {printers['printer_agent_zrok_version']} |" in guide
