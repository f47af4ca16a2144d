"""Turn Pulumi stack outputs into the generated Ansible inventory, one file per stack.

    python -m infra.inventory --outputs eu-central.json --outputs us-east.json
    python -m infra.inventory --stack eu-central --stack us-east     # needs the pulumi CLI

`--outputs` reads files saved with `pulumi stack output --json --stack <stack> > <stack>.json`
(the file name without .json is the stack name, or write `<stack>=<file>`). `--stack` runs that
command itself. Each stack becomes `inventory/generated/<stack>.yml`. The same outputs always
render the same bytes: hosts in natural name order, no timestamps.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from infra.cloud_init import template_environment

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT_DIR = ROOT / "inventory" / "generated"

# The text `pulumi stack output --json` prints in place of a secret value without --show-secrets.
SECRET_PLACEHOLDER = "[secret]"

_STACK_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class InventoryError(Exception):
    """Stack outputs that cannot become an inventory. The message names the stack and field."""


class _Host(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
    provider: Literal["hcloud", "aws", "lab"]
    region: str = Field(min_length=1)
    location: str = Field(min_length=1)
    ipv4: str
    ipv6: Optional[str] = None

    @field_validator("ipv4")
    @classmethod
    def _check_ipv4(cls, value: str) -> str:
        if value == SECRET_PLACEHOLDER:
            raise ValueError(
                "is a Pulumi secret placeholder, but the inventory needs the address in plain text"
            )
        if ipaddress.ip_address(value).version != 4:
            raise ValueError(f"{value} is not an IPv4 address")
        return value

    @field_validator("ipv6")
    @classmethod
    def _check_ipv6(cls, value: Optional[str]) -> Optional[str]:
        if value in (None, ""):
            return None
        if ipaddress.ip_address(value).version != 6:
            raise ValueError(f"{value} is not an IPv6 address")
        return value


class FrontendOutput(_Host):
    """One entry of the `frontends` stack output."""

    api_endpoint: str = Field(pattern=r"^https://[a-z0-9.-]+(:\d+)?$")
    domain: str = Field(pattern=r"^[a-z0-9.-]+$")
    capacity: int = Field(ge=1)


class ControlServerOutput(_Host):
    """The `control_server` stack output."""

    url: str = Field(pattern=r"^https://")


class StackOutputs(BaseModel):
    """The stack outputs that the inventory needs. Other outputs are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    frontends: list[FrontendOutput] = Field(default_factory=list)
    control_server: Optional[ControlServerOutput] = None
    admin_user: Optional[str] = None


@dataclass(frozen=True)
class StackSource:
    """Source of one stack's outputs: a saved JSON file, or the pulumi CLI when path is None."""

    stack: str
    path: Optional[Path] = None

    def describe(self) -> str:
        return (
            str(self.path) if self.path else f"pulumi stack output --stack {self.stack}"
        )


def natural_key(name: str) -> list[Any]:
    """Sort key that puts eu-central-2 before eu-central-10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def parse_outputs(data: Any, source: str) -> StackOutputs:
    """Validate raw stack outputs, raising InventoryError that names the source and each bad field."""
    if not isinstance(data, dict):
        raise InventoryError(
            f"{source}: expected a JSON object of stack outputs, got {type(data).__name__}"
        )
    try:
        return StackOutputs.model_validate(data)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            field = ".".join(str(part) for part in item["loc"])
            problems.append(f"  - {field}: {item['msg']}")
        raise InventoryError(
            f"{source}: invalid stack outputs:\n" + "\n".join(problems)
        ) from None


def render_inventory(stack: str, outputs: StackOutputs) -> str:
    """Render one stack's inventory file in the fleet's inventory format."""
    frontends = sorted(
        outputs.frontends, key=lambda frontend: natural_key(frontend.name)
    )
    template = template_environment().get_template("inventory.yml.j2")
    return template.render(
        stack=stack,
        frontends=frontends,
        control_server=outputs.control_server,
        admin_user=outputs.admin_user,
    )


def read_stack_outputs(source: StackSource, project_dir: Path = ROOT) -> Any:
    """Return the parsed JSON outputs of a stack from its file or the pulumi CLI."""
    if source.path is not None:
        try:
            return json.loads(source.path.read_text())
        except FileNotFoundError:
            raise InventoryError(f"{source.path}: file not found") from None
        except json.JSONDecodeError as error:
            raise InventoryError(
                f"{source.path}: not JSON from `pulumi stack output --json` ({error})"
            ) from None

    pulumi = shutil.which("pulumi")
    if pulumi is None:
        raise InventoryError(
            f"stack {source.stack}: the pulumi CLI is not installed. Save the outputs where it is "
            f"(pulumi stack output --json --stack {source.stack} > {source.stack}.json) and pass "
            f"--outputs {source.stack}.json"
        )
    result = subprocess.run(
        [pulumi, "stack", "output", "--json", "--stack", source.stack],
        cwd=project_dir,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise InventoryError(
            f"stack {source.stack}: `pulumi stack output` failed with exit code {result.returncode}: "
            f"{result.stderr.strip()}"
        )
    return json.loads(result.stdout)


def existing_frontend_names(output_dir: Path, skip: set[str]) -> dict[str, str]:
    """Return frontend name -> stack of the generated files that this run does not rewrite."""
    names: dict[str, str] = {}
    for path in sorted(output_dir.glob("*.yml")):
        if path.stem in skip:
            continue
        try:
            data = yaml.safe_load(path.read_text()) or {}
            hosts = data["all"]["children"]["zrok_frontends"]["hosts"] or {}
        except (yaml.YAMLError, KeyError, TypeError):
            continue
        for name in hosts:
            names[name] = path.stem
    return names


def generate(
    sources: Sequence[StackSource],
    output_dir: Path = DEFAULT_OUTPUT_DIR,
    check: bool = False,
    project_dir: Path = ROOT,
) -> list[tuple[Path, bool, StackOutputs]]:
    """Write (or with check=True only compare) one inventory file per stack.

    Returns (path, changed, outputs) per stack. Raises InventoryError before writing anything
    when an input is invalid or a frontend name occurs in two stacks.
    """
    stacks = [source.stack for source in sources]
    duplicates = sorted({stack for stack in stacks if stacks.count(stack) > 1})
    if duplicates:
        raise InventoryError(f"stack {', '.join(duplicates)} given more than once")

    parsed: list[tuple[StackSource, StackOutputs]] = []
    for source in sources:
        outputs = parse_outputs(
            read_stack_outputs(source, project_dir), source.describe()
        )
        parsed.append((source, outputs))

    owners = existing_frontend_names(output_dir, skip=set(stacks))
    for source, outputs in parsed:
        for frontend in outputs.frontends:
            owner = owners.setdefault(frontend.name, source.stack)
            if owner != source.stack:
                raise InventoryError(
                    f"frontend {frontend.name} occurs in stack {owner} and stack {source.stack}, but "
                    "frontend names must be unique across the fleet. Give the stacks different "
                    "printer-fleet:region values"
                )

    results = []
    for source, outputs in parsed:
        path = output_dir / f"{source.stack}.yml"
        content = render_inventory(source.stack, outputs)
        changed = not path.exists() or path.read_text() != content
        if changed and not check:
            output_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        results.append((path, changed, outputs))
    return results


def parse_source(value: str, from_file: bool) -> StackSource:
    """Parse one --outputs (`[<stack>=]<file>`) or --stack (`[org/project/]<stack>`) argument."""
    if from_file:
        stack, separator, path = value.partition("=")
        if not separator:
            path, stack = value, Path(value).name.removesuffix(".json")
    else:
        stack, path = value.rsplit("/", 1)[-1], None

    if not _STACK_NAME.match(stack):
        raise InventoryError(
            f"{value!r}: {stack!r} is not a usable stack name for a file name"
        )
    return StackSource(stack=stack, path=Path(path) if path else None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m infra.inventory",
        description="Write inventory/generated/<stack>.yml from Pulumi stack outputs.",
    )
    parser.add_argument(
        "--outputs",
        action="append",
        default=[],
        metavar="[STACK=]FILE",
        help="JSON saved from `pulumi stack output --json`. The stack name is the file name without .json",
    )
    parser.add_argument(
        "--stack",
        action="append",
        default=[],
        metavar="STACK",
        help="read this stack's outputs through the pulumi CLI",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_OUTPUT_DIR,
        help=f"directory of the generated files (default: {DEFAULT_OUTPUT_DIR.relative_to(ROOT)})",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing, and exit with status 1 when a file is missing or differs from its stack outputs",
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.outputs and not args.stack:
        print(
            "error: give at least one --outputs FILE or --stack STACK", file=sys.stderr
        )
        return 2

    try:
        sources = [parse_source(value, from_file=True) for value in args.outputs]
        sources += [parse_source(value, from_file=False) for value in args.stack]
        results = generate(sources, output_dir=args.output_dir, check=args.check)
    except InventoryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    stale = False
    for path, changed, outputs in results:
        hosts = f"{len(outputs.frontends)} frontend(s), {1 if outputs.control_server else 0} control server(s)"
        if args.check:
            state = "out of date" if changed else "up to date"
            stale = stale or changed
        else:
            state = "written" if changed else "unchanged"
        print(f"{path}: {state} ({hosts})")

    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
