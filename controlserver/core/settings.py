"""Server settings: environment variables prefixed `FLEET_`, overridden by command-line options."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from controlserver.core import roles

# Values that people paste from examples. A secret equal to one of these (case-insensitive),
# wrapped in angle brackets, or shorter than MIN_SECRET_LENGTH is rejected at startup.
PLACEHOLDER_SECRETS = frozenset(
    {
        "changeme", "change-me", "change_me", "changethis", "secret", "password", "admin",
        "token", "example", "todo", "xxx", "none", "null", "test", "default",
    }
)
MIN_SECRET_LENGTH = 16


def check_secret(value: str, name: str) -> str:
    """Return `value` unless it is empty, a known placeholder or too short to be random."""
    stripped = value.strip()
    if not stripped:
        raise ValueError(f"{name} is empty: set it to a random string, e.g. `openssl rand -hex 32`")
    if stripped.lower() in PLACEHOLDER_SECRETS or re.fullmatch(r"<.*>|x+|\*+", stripped.lower()):
        raise ValueError(
            f"{name} is a placeholder value: set it to a random string, e.g. `openssl rand -hex 32`"
        )
    if len(stripped) < MIN_SECRET_LENGTH:
        raise ValueError(
            f"{name} is shorter than {MIN_SECRET_LENGTH} characters: "
            "use a random string, e.g. `openssl rand -hex 32`"
        )
    return stripped


class Settings(BaseSettings):
    """Control server settings. Every field can be set as `FLEET_<FIELD>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="FLEET_", extra="ignore")

    inventory: Path = Field(description="Ansible inventory file or directory with group zrok_frontends")
    database_url: str = "sqlite:////var/lib/printer-fleet/control.db"
    listen: str = "127.0.0.1:8443"
    admin_token: SecretStr | None = None
    admin_token_file: Path | None = None
    # Operators: `name:token[,name:token...]`, and/or a YAML file of token hashes (core.roles).
    operator_tokens: SecretStr | None = None
    operator_tokens_file: Path | None = None
    secrets_file: Path = Path("/etc/printer-fleet/secrets.yml")
    tls_cert: Path | None = None
    tls_key: Path | None = None
    ca_file: Path | None = Field(
        default=None, description="CA bundle for outgoing HTTPS, added to the system trust store"
    )

    watch_inventory: bool = Field(default=True, description="reload when the inventory files change")
    heartbeat_interval_s: int = Field(default=30, ge=1, le=3600)
    heartbeat_overdue_s: float | None = Field(
        default=None, gt=0, description="a printer without a heartbeat for this long counts as overdue in "
                                        "/metrics; default 3 heartbeat intervals")
    max_body_bytes: int = Field(default=65536, ge=1024)

    # Requests per minute and bearer token, per server process; 0 turns a limit off. One
    # enrollment token serves a whole enrollment wave, so its limit is far higher.
    rate_limit_admin_per_minute: int = Field(default=1200, ge=0)
    rate_limit_enrollment_per_minute: int = Field(default=30000, ge=0)
    rate_limit_printer_per_minute: int = Field(default=60, ge=0)

    # Assignment: a frontend's score is its estimated round-trip time in ms plus
    # load_weight_ms * (assigned / capacity), so a full frontend costs load_weight_ms more.
    load_weight_ms: float = Field(default=30.0, ge=0)
    move_batch_size: int = Field(default=50, ge=1)
    move_interval_s: float = Field(default=10.0, gt=0)

    # Health monitoring. Only the holder of the monitor lease probes and moves printers.
    monitor_enabled: bool = True
    frontend_probe_interval_s: float = Field(default=15.0, gt=0)
    printer_probe_interval_s: float = Field(default=60.0, gt=0)
    probe_timeout_s: float = Field(default=5.0, gt=0)
    unhealthy_after: int = Field(default=3, ge=1, description="consecutive failed probes")
    healthy_after: int = Field(default=2, ge=1, description="consecutive successful probes")
    printer_probe_failures: int = Field(default=2, ge=1)
    printer_probe_concurrency: int = Field(default=20, ge=1)
    frontend_probe_concurrency: int = Field(default=50, ge=1)
    lease_ttl_s: float = Field(default=30.0, gt=0)

    # zrok accounts: one per printer and frontend, e-mail <printer_id>-<random>@<domain>.
    zrok_account_email_domain: str = "printers.fleet.invalid"
    zrok_timeout_s: float = Field(default=10.0, gt=0)
    # Unclaimed accounts the monitor keeps per frontend, so that an enrollment wave needs no
    # admin API call per printer; 0 creates every account at assignment time.
    zrok_account_pool_size: int = Field(default=10, ge=0)
    zrok_account_pool_refill_interval_s: float = Field(default=10.0, gt=0)
    share_auth_username: str = "fleet"

    # Dashboard: the key that signs its session cookies. Unset, each start generates one, which
    # logs everyone out at a restart and cannot work behind a load balancer over several replicas.
    session_secret: SecretStr | None = None

    @field_validator("admin_token")
    @classmethod
    def _admin_token_not_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        return SecretStr(check_secret(value.get_secret_value(), "FLEET_ADMIN_TOKEN"))

    @field_validator("session_secret")
    @classmethod
    def _session_secret_not_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        return SecretStr(check_secret(value.get_secret_value(), "FLEET_SESSION_SECRET"))

    @field_validator("listen")
    @classmethod
    def _listen_has_port(cls, value: str, info: ValidationInfo) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"listen address {value!r} is invalid: use HOST:PORT, e.g. 0.0.0.0:8443")
        return value

    @model_validator(mode="after")
    def _load_admin_token_file(self) -> Settings:
        if self.admin_token is None and self.admin_token_file is not None:
            try:
                text = self.admin_token_file.read_text()
            except OSError as exc:
                raise ValueError(f"admin token file {self.admin_token_file} cannot be read: {exc.strerror}")
            self.admin_token = SecretStr(check_secret(text, f"admin token file {self.admin_token_file}"))
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both --tls-cert and --tls-key, or neither")
        return self

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def heartbeat_overdue_after_s(self) -> float:
        return self.heartbeat_overdue_s or 3.0 * self.heartbeat_interval_s

    def load_operator_tokens(self) -> dict[str, str]:
        """Return operator name -> token hash from FLEET_OPERATOR_TOKENS and the operator tokens file."""
        from_env = {}
        if self.operator_tokens is not None:
            from_env = roles.parse_operator_tokens(self.operator_tokens.get_secret_value(), check_secret)
        from_file = {}
        if self.operator_tokens_file is not None:
            from_file = roles.load_operator_tokens_file(self.operator_tokens_file)
        return roles.merge_operator_tokens(from_env, from_file)

    def require_admin_token(self) -> str:
        if self.admin_token is None:
            raise ValueError(
                "no admin token: set FLEET_ADMIN_TOKEN or pass --admin-token-file with a random string"
            )
        return self.admin_token.get_secret_value()


def load_zrok_admin_secrets(path: Path) -> dict[str, str]:
    """Read `{zrok_admin_secrets: {<frontend>: <secret>}}` from the secrets file.

    A missing file yields no secrets (frontends without one get no printers). A file readable by
    group or others is still used; the caller logs a warning about its mode.
    """
    if not path.exists():
        return {}
    with path.open() as stream:
        document: Any = yaml.safe_load(stream) or {}
    if not isinstance(document, dict):
        raise ValueError(f"secrets file {path} is invalid: expected a mapping with key zrok_admin_secrets")
    secrets_by_frontend = document.get("zrok_admin_secrets") or {}
    if not isinstance(secrets_by_frontend, dict):
        raise ValueError(
            f"secrets file {path}: zrok_admin_secrets is invalid: expected a mapping frontend -> secret"
        )
    result: dict[str, str] = {}
    for frontend, secret in secrets_by_frontend.items():
        if not isinstance(secret, str):
            raise ValueError(f"secrets file {path}: zrok_admin_secrets.{frontend} must be a string")
        result[str(frontend)] = check_secret(secret, f"secrets file {path}: zrok_admin_secrets.{frontend}")
    return result


def secrets_file_too_open(path: Path) -> bool:
    """Tell whether the secrets file is readable by group or others."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IRWXG | stat.S_IRWXO))
