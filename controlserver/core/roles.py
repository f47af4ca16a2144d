"""Roles of the admin API's tokens: one admin token, and named operator tokens.

An admin token may do everything. An operator token may read the fleet (printers, frontends) and
get the credentials to reach a printer, but may not drain, undrain, enroll or delete. Only the
SHA-256 hash of each token is kept in memory, and the operator tokens file contains hashes only.

The operator tokens file is YAML::

    operator_tokens:
      alice: "sha256:<64 hex digits>"    # from `python -m controlserver operator-token alice`
"""

from __future__ import annotations

import enum
import hmac
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from controlserver.core.security import hash_token, new_token

OPERATOR_TOKEN_PREFIX = "fleet-operator-"
OPERATOR_NAME_PATTERN = r"^[a-z0-9][a-z0-9._@-]{0,63}$"
ADMIN_NAME = "admin"
_HASH_PATTERN = re.compile(r"^sha256:([0-9a-f]{64})$")


class Role(enum.StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"


class Permission(enum.StrEnum):
    READ = "read"          # list printers and frontends
    ACCESS = "access"      # get a printer's public URL and credentials
    MANAGE = "manage"      # drain, undrain, enrollment tokens, delete printers


PERMISSIONS = {
    Role.ADMIN: frozenset(Permission),
    Role.OPERATOR: frozenset({Permission.READ, Permission.ACCESS}),
}


@dataclass(frozen=True)
class Identity:
    """The owner of a presented token. Its name is logged, the token never is."""

    name: str
    role: Role

    def may(self, permission: Permission) -> bool:
        return permission in PERMISSIONS[self.role]


class TokenRegistry:
    """Token hashes of the admin and the operators, looked up in constant time per entry."""

    def __init__(self, admin_token: str, operators: dict[str, str] | None = None) -> None:
        self._admin_hash = hash_token(admin_token)
        self._operators: dict[str, str] = {}
        self.set_operators(operators or {})

    def set_operators(self, operators: dict[str, str]) -> None:
        """Replace the operator tokens: `operators` maps each name to its token's SHA-256 hex hash."""
        if self._admin_hash in operators.values():
            raise ValueError("an operator token equals the admin token: give each operator a token of its own")
        self._operators = dict(operators)

    @property
    def admin_hash(self) -> str:
        """SHA-256 hex hash of the admin token."""
        return self._admin_hash

    @property
    def operator_names(self) -> list[str]:
        return sorted(self._operators)

    def identify(self, token: str) -> Identity | None:
        """Return the identity that owns `token`, or None for an unknown token."""
        presented = hash_token(token)
        # Every stored hash is compared, so the time taken does not tell which entry matched.
        found: Identity | None = None
        if hmac.compare_digest(presented, self._admin_hash):
            found = Identity(ADMIN_NAME, Role.ADMIN)
        for name, stored in self._operators.items():
            if hmac.compare_digest(presented, stored) and found is None:
                found = Identity(name, Role.OPERATOR)
        return found


def new_operator_token() -> tuple[str, str]:
    """Return a new operator token and the line value to store for it (`sha256:<hex>`)."""
    token = new_token(OPERATOR_TOKEN_PREFIX)
    return token, f"sha256:{hash_token(token)}"


def check_operator_name(name: str, source: str) -> str:
    if not re.fullmatch(OPERATOR_NAME_PATTERN, name):
        raise ValueError(
            f"{source}: operator name {name!r} is invalid: use 1-64 characters of a-z, 0-9, '.', '_', '@' "
            "or '-', starting with a letter or digit"
        )
    return name


def parse_operator_tokens(value: str, check_secret) -> dict[str, str]:
    """Parse FLEET_OPERATOR_TOKENS, `name:token[,name:token...]`, into name -> token hash."""
    result: dict[str, str] = {}
    for number, entry in enumerate(part.strip() for part in value.split(",")):
        if not entry:
            continue
        name, sep, token = entry.partition(":")
        if not sep:
            raise ValueError(
                f"FLEET_OPERATOR_TOKENS entry {number + 1} is invalid: use name:token, "
                "separated by commas, e.g. alice:<token>,bob:<token>"
            )
        name = check_operator_name(name.strip(), "FLEET_OPERATOR_TOKENS")
        if name in result:
            raise ValueError(f"FLEET_OPERATOR_TOKENS: operator {name} is listed twice: give each name once")
        result[name] = hash_token(check_secret(token, f"FLEET_OPERATOR_TOKENS: token of operator {name}"))
    _reject_shared_tokens(result, "FLEET_OPERATOR_TOKENS")
    return result


def load_operator_tokens_file(path: Path) -> dict[str, str]:
    """Read `{operator_tokens: {<name>: "sha256:<hex>"}}` from `path` into name -> token hash."""
    try:
        with path.open() as stream:
            document: Any = yaml.safe_load(stream) or {}
    except OSError as exc:
        raise ValueError(f"operator tokens file {path} cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        # Only the position is reported, because the offending text may be a pasted token.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValueError(f"operator tokens file {path} is not valid YAML{where}") from None
    entries = document.get("operator_tokens") if isinstance(document, dict) else None
    if entries is None:
        entries = {}
    if not isinstance(entries, dict):
        raise ValueError(
            f"operator tokens file {path}: operator_tokens is invalid: expected a mapping name -> \"sha256:<hex>\""
        )
    result: dict[str, str] = {}
    for name, value in entries.items():
        name = check_operator_name(str(name), f"operator tokens file {path}")
        match = _HASH_PATTERN.match(value) if isinstance(value, str) else None
        if match is None:
            # The value is not echoed: it may be a token pasted by mistake.
            raise ValueError(
                f"operator tokens file {path}: operator_tokens.{name} is invalid: expected \"sha256:<64 hex "
                "digits>\" as printed by `python -m controlserver operator-token`; the file stores no tokens"
            )
        result[name] = match.group(1)
    _reject_shared_tokens(result, f"operator tokens file {path}")
    return result


def merge_operator_tokens(*sources: dict[str, str]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for source in sources:
        for name, token_hash in source.items():
            if name in merged:
                raise ValueError(
                    f"operator {name} is defined both in FLEET_OPERATOR_TOKENS and in the operator tokens file: "
                    "keep one"
                )
            merged[name] = token_hash
    _reject_shared_tokens(merged, "operator tokens")
    return merged


def _reject_shared_tokens(tokens: dict[str, str], source: str) -> None:
    seen: dict[str, str] = {}
    for name, token_hash in tokens.items():
        if token_hash in seen:
            raise ValueError(f"{source}: operators {seen[token_hash]} and {name} share a token: "
                             "give each operator a token of its own")
        seen[token_hash] = name
