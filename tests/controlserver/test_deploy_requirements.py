"""The control-server play installs every package that the server imports.

playbooks/control_server.yml builds wheels of `control_server_requirements` (and their
dependencies) on the controller and installs only those on the host. A package that the server
imports but that list lacks makes the service fail at start on the host only.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys

import yaml

from tests.controlserver.conftest import REPO


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_distributions() -> dict[str, str]:
    """Return each third-party distribution that controlserver imports, with one file that imports it."""
    providers = importlib.metadata.packages_distributions()
    found: dict[str, str] = {}
    for path in sorted((REPO / "controlserver").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".", 1)[0]
                if top == "controlserver" or top in sys.stdlib_module_names:
                    continue
                for distribution in providers.get(top, [top]):
                    found.setdefault(normalize(distribution), str(path.relative_to(REPO)))
    return found


def test_play_installs_every_imported_package():
    group_vars = yaml.safe_load((REPO / "inventory/group_vars/control_servers.yml").read_text())
    listed = {normalize(name) for name in group_vars["control_server_requirements"]}
    listed |= {normalize(name) for name in group_vars["control_server_nodeps_requirements"]}
    playbook = (REPO / "playbooks/control_server.yml").read_text()
    pin_lines = [line for name in ("requirements.txt", "requirements-nodeps.txt")
                 for line in (REPO / name).read_text().splitlines()]
    pinned = {normalize(line.split("==")[0]) for line in pin_lines if "==" in line}

    imported = imported_distributions()

    assert "fastapi" in imported
    missing_in_group_vars = {name: path for name, path in imported.items() if name not in listed}
    assert missing_in_group_vars == {}, "add these to control_server_requirements in inventory/group_vars"
    missing_in_playbook = sorted(name for name in imported
                                 if not re.search(rf"'{re.escape(name)}'", normalize(playbook)))
    assert missing_in_playbook == [], "add these to the default list in playbooks/control_server.yml"
    assert sorted(set(imported) - pinned) == []
