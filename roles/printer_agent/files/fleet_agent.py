#!/usr/bin/env python3
"""Fleet agent: joins a Klipper printer to the printer fleet and shares its Moonraker API.

The agent enrolls with the control server, shares Moonraker through zrok v2 on the frontend that
the control server assigns, sends heartbeats and follows move orders. The contract with the
control server is docs/agent-protocol.md in the printer-fleet repository.

It uses the Python 3 standard library only, so it runs on any printer OS that runs Klipper.
It runs as root under systemd (Restart=always) and logs to stdout, which the journal stores.
No token, password or API key ever reaches a log line, an exception message or a logged command.
"""

from __future__ import annotations

import argparse
import configparser
import ctypes
import ctypes.util
import hashlib
import json
import logging
import os
import random
import re
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

AGENT_VERSION = "1.0.0"

LOG = logging.getLogger("fleet_agent")

# Exit status for an invalid configuration (EX_CONFIG from sysexits.h). The systemd unit lists it
# in RestartPreventExitStatus, so a broken config file does not restart the agent in a loop.
EXIT_CONFIG = 78

# 1-61 characters, so that the share name p-<printer_id> fits in one DNS label (63 characters).
PRINTER_ID_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,59}[a-z0-9])?$")

# The earliest wall-clock time the agent accepts as plausible when the OS cannot report whether
# the clock is synchronised. Boards without a real-time clock boot with a date near their image's
# build date or 1970, which makes every TLS certificate look not yet valid.
PLAUSIBLE_TIME_FLOOR = 1767225600  # 2026-01-01T00:00:00Z

# zrok2 CLI failures that come from an unreachable or overloaded controller. They never lead to
# deleting a share, a name or the environment.
ZROK_TRANSIENT_MARKERS = (
    "[502]",
    "[503]",
    "[504]",
    "connection refused",
    "connection reset",
    "i/o timeout",
    "timeout awaiting",
    "no such host",
    "context deadline exceeded",
    "eof",
)
ZROK_SHARE_CONFLICT_MARKERS = ("shareconflict", "[409]")

# Attempts to start a share from inside the heartbeat loop before the loop sends the next
# heartbeat (with share_state "failed") and tries again.
LOOP_SHARE_ATTEMPTS = 5


# ---------------------------------------------------------------------------------------------
# Configuration


class ConfigError(Exception):
    """An invalid or incomplete agent configuration; the message names the field and the fix."""


@dataclass
class AgentConfig:
    control_url: str
    printer_id: str
    enrollment_token: str = ""
    ca_file: str = ""
    zrok2_path: str = "/usr/local/bin/zrok2"
    moonraker_url: str = "http://127.0.0.1:7125"
    moonraker_data_path: str = "/home/pi/printer_data"
    share_target: str = "http://127.0.0.1:7125"
    state_dir: str = "/var/lib/printer-fleet-agent"
    token_file: str = ""
    region: str = ""
    latitude: Optional[float] = None
    longitude: Optional[float] = None
    clock_sync_timeout_s: float = 300.0
    request_timeout_s: float = 15.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 300.0
    conflict_retry_s: float = 3600.0
    share_stop_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.token_file:
            self.token_file = os.path.join(self.state_dir, "printer_token")

    @property
    def zrok_home(self) -> str:
        """HOME of every zrok2 command, so its environment lives in <state_dir>/.zrok2."""
        return self.state_dir


_FLOAT_FIELDS = {
    "latitude",
    "longitude",
    "clock_sync_timeout_s",
    "request_timeout_s",
    "backoff_initial_s",
    "backoff_max_s",
    "conflict_retry_s",
    "share_stop_timeout_s",
}


def load_config(path: str) -> AgentConfig:
    """Read the agent configuration from a JSON file or an INI file with an [agent] section."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None

    if text.lstrip().startswith("{"):
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    else:
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read_string(text, source=path)
        except configparser.Error as exc:
            raise ConfigError(f"config file {path} is not valid INI: {exc.__class__.__name__}") from None
        if not parser.has_section("agent"):
            raise ConfigError(f"config file {path} has no [agent] section; put the settings under [agent]")
        raw = dict(parser.items("agent"))

    return build_config(raw, path)


def build_config(raw: dict[str, Any], source: str = "config") -> AgentConfig:
    """Validate raw settings and return the configuration; raise ConfigError naming the field."""
    known = set(AgentConfig.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)}; remove them or fix the spelling")

    values: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None or value == "":
            continue
        if key in _FLOAT_FIELDS:
            try:
                values[key] = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{source}: {key} must be a number, got {value!r}") from None
        else:
            values[key] = str(value)

    for required in ("control_url", "printer_id"):
        if not values.get(required):
            raise ConfigError(f"{source}: {required} is missing; set it in the [agent] settings")

    parsed = urllib.parse.urlsplit(values["control_url"])
    if parsed.scheme not in ("https", "http") or not parsed.hostname:
        raise ConfigError(f"{source}: control_url must be an https:// (or http://) URL, got {values['control_url']!r}")
    if not PRINTER_ID_PATTERN.match(values["printer_id"]):
        raise ConfigError(
            f"{source}: printer_id {values['printer_id']!r} is invalid; use 1-61 characters of "
            "[a-z0-9-] starting and ending with a letter or digit"
        )
    for coordinate, limit in (("latitude", 90.0), ("longitude", 180.0)):
        if coordinate in values and not -limit <= values[coordinate] <= limit:
            raise ConfigError(f"{source}: {coordinate} must be between -{limit:g} and {limit:g}")
    if values.get("ca_file") and not os.path.isfile(values["ca_file"]):
        raise ConfigError(f"{source}: ca_file {values['ca_file']} does not exist; fix the path or remove the setting")

    return AgentConfig(**values)


# ---------------------------------------------------------------------------------------------
# Secrets on disk


def read_secret_file(path: str) -> str:
    """Return the stripped content of a secret file, or an empty string when it does not exist."""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return ""


def write_secret_file(path: str, secret: str) -> None:
    """Write a secret atomically into a file that only its owner (root) can read (mode 0600)."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)

    fd, tmp_path = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secret + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
        raise


def read_moonraker_api_key(data_path: str) -> str:
    """Read Moonraker's API key from its database, or return "" when it cannot be read.

    Moonraker 0.11 keeps the key in <data>/database/moonraker-sql.db, table authorized_users,
    row username '_API_KEY_USER_', column password.
    """
    db_path = os.path.join(data_path, "database", "moonraker-sql.db")
    if not os.path.exists(db_path):
        LOG.warning("Moonraker database %s not found; registering without the Moonraker API key", db_path)
        return ""

    try:
        connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
        try:
            row = connection.execute(
                "SELECT password FROM authorized_users WHERE username = ?", ("_API_KEY_USER_",)
            ).fetchone()
        finally:
            connection.close()
    except sqlite3.Error as exc:
        LOG.warning("Cannot read the Moonraker API key from %s (%s); registering without it", db_path, exc)
        return ""

    if row is None or not row[0]:
        LOG.warning("Moonraker database %s has no API key row yet; registering without it", db_path)
        return ""
    return str(row[0])


# ---------------------------------------------------------------------------------------------
# Machine identity and clock


def compute_hardware_id(
    cpuinfo_path: str = "/proc/cpuinfo",
    dmi_uuid_path: str = "/sys/class/dmi/id/product_uuid",
    net_path: str = "/sys/class/net",
    machine_id_path: str = "/etc/machine-id",
) -> str:
    """Hash the parts that differ between two machines even when they booted from one cloned SD card image.

    The parts are the CPU serial (Raspberry Pi and other ARM boards), the DMI product UUID (PCs and
    VMs) and the MAC addresses of network interfaces that have a physical device. /etc/machine-id
    is a clone's copy, so it is used only when none of these parts exists.
    """
    parts: list[str] = []

    try:
        for line in Path(cpuinfo_path).read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() == "serial" and value.strip().strip("0"):
                parts.append("cpu-serial=" + value.strip())
    except OSError:
        pass

    try:
        dmi_uuid = Path(dmi_uuid_path).read_text(encoding="utf-8").strip()
        if dmi_uuid:
            parts.append("dmi-uuid=" + dmi_uuid.lower())
    except OSError:
        pass

    try:
        interfaces = sorted(os.listdir(net_path))
    except OSError:
        interfaces = []
    for name in interfaces:
        if not os.path.exists(os.path.join(net_path, name, "device")):
            continue  # virtual interface (veth, bridge, tun, docker, wireguard)
        try:
            mac = Path(net_path, name, "address").read_text(encoding="utf-8").strip().lower()
        except OSError:
            continue
        if mac and mac != "00:00:00:00:00:00":
            parts.append("mac=" + mac)

    if not parts:
        machine_id = read_secret_file(machine_id_path)
        LOG.warning("No CPU serial, DMI UUID or physical network interface found; hardware_id uses /etc/machine-id")
        parts.append("machine-id=" + machine_id)

    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


def clock_synchronized() -> Optional[bool]:
    """Return whether the kernel clock is synchronised, or None when the OS cannot tell.

    Asks systemd-timedated first (NTPSynchronized), then the kernel through adjtimex(2), whose
    return value TIME_ERROR (5) means "not synchronised".
    """
    try:
        result = subprocess.run(
            ["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if result.returncode == 0 and result.stdout.strip() in ("yes", "no"):
            return result.stdout.strip() == "yes"
    except (OSError, subprocess.TimeoutExpired):
        pass

    libc_name = ctypes.util.find_library("c")
    if libc_name and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(libc_name, use_errno=True)
            timex = ctypes.create_string_buffer(512)  # larger than struct timex on every ABI
            state = libc.adjtimex(timex)  # modes=0 (zeroed buffer): read only
            if state >= 0:
                return state != 5
        except (OSError, AttributeError):
            pass
    return None


def tcp_connect_time_ms(host: str, port: int, timeout_s: float = 3.0) -> Optional[float]:
    """Return the TCP connect time to host:port in milliseconds, or None when it fails."""
    started = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return round((time.perf_counter() - started) * 1000.0, 1)
    except OSError:
        return None


# ---------------------------------------------------------------------------------------------
# Control server client


class TransientError(Exception):
    """A failure worth retrying: 5xx, timeout, refused connection, zrok controller 502/503."""


class ControlError(Exception):
    """A definitive rejection by the control server (HTTP 4xx other than 429)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class ControlClient:
    """JSON over HTTPS to the control server, with the bearer token in the header only."""

    def __init__(self, base_url: str, ca_file: str = "", timeout_s: float = 15.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.ssl_context = ssl.create_default_context(cafile=ca_file or None)

    def post(self, path: str, body: dict[str, Any], token: str) -> dict[str, Any]:
        request = urllib.request.Request(
            self.base_url + path,
            data=json.dumps(body).encode("utf-8"),
            method="POST",
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": f"printer-fleet-agent/{AGENT_VERSION}",
            },
        )
        context = self.ssl_context if self.base_url.startswith("https:") else None
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s, context=context) as response:
                return _decode_json(response.read())
        except urllib.error.HTTPError as exc:
            payload = _decode_json(exc.read() or b"{}")
            code = str(payload.get("error", "http_error"))
            message = str(payload.get("message", exc.reason))
            if exc.code >= 500 or exc.code == 429:
                raise TransientError(f"{path}: HTTP {exc.code} {code}: {message}") from None
            raise ControlError(exc.code, code, message) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, socket.timeout) as exc:
            reason = getattr(exc, "reason", exc)
            raise TransientError(f"{path}: {reason}") from None
        except ValueError as exc:
            raise TransientError(f"{path}: invalid JSON in the response ({exc})") from None


def _decode_json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data.decode("utf-8") or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


class Backoff:
    """Exponential backoff with jitter: a random delay between half and all of min(max_s, initial_s * 2^attempt)."""

    def __init__(self, initial_s: float, max_s: float, rng: random.Random) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.rng = rng
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.max_s, self.initial_s * (2**self.attempt))
        self.attempt += 1
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


# ---------------------------------------------------------------------------------------------
# zrok2 CLI


class ZrokError(Exception):
    """A zrok2 command failed for a reason other than an unreachable controller."""


class ZrokTransientError(TransientError):
    """A zrok2 command failed because the zrok controller was unreachable or overloaded."""


class ShareConflictError(ZrokError):
    """The controller rejected the share because another share holds the name (409 shareConflict)."""


def redact(argv: list[str], secrets: list[str]) -> str:
    """Return argv as one string with every secret replaced by ***."""
    shown = []
    for arg in argv:
        for secret in secrets:
            if secret:
                arg = arg.replace(secret, "***")
        shown.append(arg)
    return " ".join(shown)


class Zrok:
    """Runs the zrok2 CLI with HOME set to the agent's state directory."""

    def __init__(self, path: str, home: str, timeout_s: float = 60.0) -> None:
        self.path = path
        self.home = home
        self.timeout_s = timeout_s

    @property
    def environment_file(self) -> str:
        return os.path.join(self.home, ".zrok2", "environment.json")

    def environment(self) -> Optional[dict[str, Any]]:
        """Return the enabled environment (environment.json) or None when zrok is not enabled."""
        try:
            return json.loads(Path(self.environment_file).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as exc:
            LOG.warning("Cannot read %s (%s); treating zrok as enabled with an unknown instance", self.environment_file, exc)
            return {}

    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("ZROK2_")}
        env["HOME"] = self.home
        return env

    def run(self, args: list[str], secrets: Optional[list[str]] = None, purpose: str = "") -> str:
        """Run one zrok2 command and return its stdout; raise ZrokTransientError or ZrokError."""
        argv = [self.path, *args]
        shown = redact(argv, secrets or [])
        LOG.info("Running %s%s", shown, f" ({purpose})" if purpose else "")
        try:
            result = subprocess.run(
                argv, capture_output=True, text=True, timeout=self.timeout_s, env=self.env(), check=False
            )
        except subprocess.TimeoutExpired:
            raise ZrokTransientError(f"{shown} timed out after {self.timeout_s:g} s") from None
        except OSError as exc:
            raise ZrokError(f"cannot run {self.path}: {exc.strerror}") from None

        if result.returncode != 0:
            output = redact([(result.stderr + " " + result.stdout).strip()], secrets or [])
            output = re.sub(r"\x1b\[[0-9;]*m", "", output)[-500:]
            lowered = output.lower()
            if any(marker in lowered for marker in ZROK_SHARE_CONFLICT_MARKERS):
                raise ShareConflictError(f"{shown} failed: {output}")
            if any(marker in lowered for marker in ZROK_TRANSIENT_MARKERS):
                raise ZrokTransientError(f"{shown} failed: {output}")
            raise ZrokError(f"{shown} failed with exit status {result.returncode}: {output}")
        return result.stdout

    def run_json(self, args: list[str], purpose: str) -> Any:
        output = self.run(args, purpose=purpose).strip()
        try:
            return json.loads(output or "null")
        except json.JSONDecodeError:
            raise ZrokError(f"zrok2 {' '.join(args)} did not print JSON") from None


class ZrokController:
    """The zrok v2 controller's REST API, for the one call that the zrok2 CLI does not offer.

    `zrok2 disable` disables only the environment enabled on this machine. An environment that the
    agent dropped while its instance was unreachable can be disabled only through
    `POST /api/v2/disable` with the account token, which also removes that environment's shares.
    """

    def __init__(self, timeout_s: float = 15.0) -> None:
        self.timeout_s = timeout_s
        # zrok2 itself trusts the system store, so the controller's certificate is checked the same way.
        self.ssl_context = ssl.create_default_context()

    def disable_environment(self, api_endpoint: str, account_token: str, environment_zid: str) -> None:
        """Disable one environment of the account; raise ZrokTransientError or ZrokError."""
        url = api_endpoint.rstrip("/") + "/api/v2/disable"
        request = urllib.request.Request(
            url,
            data=json.dumps({"identity": environment_zid}).encode("utf-8"),
            method="POST",
            headers={
                "X-TOKEN": account_token,
                "Content-Type": "application/zrok.v1+json",
                "Accept": "application/zrok.v1+json",
                "User-Agent": f"printer-fleet-agent/{AGENT_VERSION}",
            },
        )
        context = self.ssl_context if url.startswith("https:") else None
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s, context=context):
                return
        except urllib.error.HTTPError as exc:
            if exc.code >= 500 or exc.code == 429:
                raise ZrokTransientError(f"disabling environment {environment_zid} at {url}: HTTP {exc.code}") from None
            # The controller returns 401 when the environment does not exist or belongs to another account.
            raise ZrokError(
                f"disabling environment {environment_zid} at {url} was rejected with HTTP {exc.code}; "
                "the share name stays taken until that environment is disabled by its account's owner"
            ) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, socket.timeout) as exc:
            reason = getattr(exc, "reason", exc)
            raise ZrokTransientError(f"disabling environment {environment_zid} at {url}: {reason}") from None


class ShareProcess:
    """The supervised `zrok2 share public` child process."""

    def __init__(self, zrok: Zrok, argv: list[str], secrets: list[str]) -> None:
        self.zrok = zrok
        self.argv = argv
        self.secrets = secrets
        self.process: Optional[subprocess.Popen[str]] = None
        self.started_at = 0.0

    def start(self) -> None:
        LOG.info("Starting share: %s", redact([self.zrok.path, *self.argv], self.secrets))
        self.process = subprocess.Popen(
            [self.zrok.path, *self.argv],
            env=self.zrok.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.started_at = time.monotonic()
        threading.Thread(target=self._forward_output, daemon=True).start()

    def _forward_output(self) -> None:
        process = self.process
        if process is None or process.stdout is None:
            return
        for line in process.stdout:
            line = re.sub(r"\x1b\[[0-9;]*m", "", line.rstrip())
            if line:
                LOG.info("zrok2 share: %s", redact([line], self.secrets))

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_status(self) -> Optional[int]:
        return None if self.process is None else self.process.poll()

    def stop(self, timeout_s: float) -> None:
        """Stop with SIGTERM, so zrok2 removes its share; SIGKILL after timeout_s."""
        if self.process is None or self.process.poll() is not None:
            return
        LOG.info("Stopping share process %d", self.process.pid)
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            LOG.warning("Share process %d ignored SIGTERM for %g s; killing it", self.process.pid, timeout_s)
            self.process.kill()
            self.process.wait()


# ---------------------------------------------------------------------------------------------
# The agent


@dataclass
class Assignment:
    frontend: str
    api_endpoint: str
    share_name: str
    account_token: str
    public_url: str = ""
    region: str = ""
    share_auth: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, value: Any) -> "Assignment":
        if not isinstance(value, dict):
            raise ValueError("assignment is missing")
        missing = [key for key in ("frontend", "api_endpoint", "share_name", "account_token") if not value.get(key)]
        if missing:
            raise ValueError(f"assignment lacks {', '.join(missing)}")
        return cls(
            frontend=str(value["frontend"]),
            api_endpoint=str(value["api_endpoint"]),
            share_name=str(value["share_name"]),
            account_token=str(value["account_token"]),
            public_url=str(value.get("public_url") or ""),
            region=str(value.get("region") or ""),
            share_auth=dict(value.get("share_auth") or {"mode": "none"}),
        )

    def same_instance(self, other: Optional["Assignment"]) -> bool:
        return other is not None and (self.api_endpoint, self.account_token) == (other.api_endpoint, other.account_token)

    def same_share(self, other: Optional["Assignment"]) -> bool:
        return self.same_instance(other) and (self.share_name, self.share_auth) == (other.share_name, other.share_auth)


class StopAgent(Exception):
    """Raised inside the agent's loops when a stop was requested (SIGTERM)."""


class FleetAgent:
    """Enrollment, share supervision, heartbeats and move orders for one printer."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        sleep: Optional[Callable[[float], None]] = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rng: Optional[random.Random] = None,
        clock_synchronized: Callable[[], Optional[bool]] = clock_synchronized,
        hardware_id: Optional[str] = None,
        client: Optional[ControlClient] = None,
        zrok_controller: Optional[ZrokController] = None,
        connect_time_ms: Optional[Callable[[str, int], Optional[float]]] = None,
    ) -> None:
        self.config = config
        self.stop_requested = threading.Event()
        # The default sleep wakes up as soon as a stop is requested (SIGTERM).
        self._sleep = sleep or self.stop_requested.wait
        self.clock = clock
        self.monotonic = monotonic
        self.rng = rng or random.Random()
        self.clock_synchronized = clock_synchronized
        self.hardware_id = hardware_id
        self.client = client or ControlClient(config.control_url, config.ca_file, config.request_timeout_s)
        self.zrok = Zrok(config.zrok2_path, config.zrok_home)
        self.zrok_controller = zrok_controller or ZrokController(config.request_timeout_s)
        self.connect_time_ms = connect_time_ms or tcp_connect_time_ms

        self.printer_token = ""
        self.assignment: Optional[Assignment] = None
        self.heartbeat_interval_s = 30.0
        self.candidates: list[dict[str, str]] = []
        self.share: Optional[ShareProcess] = None
        self.share_token = ""
        self.share_failures = 0
        self.share_start_failed = False
        self.moonraker_api_key = ""
        self.moonraker_api_key_changed = False
        self.heartbeat_backoff = Backoff(config.backoff_initial_s, config.backoff_max_s, self.rng)
        self.next_heartbeat_delay_s: Optional[float] = None

    # -- helpers ------------------------------------------------------------------------------

    def sleep(self, seconds: float) -> None:
        if self.stop_requested.is_set():
            raise StopAgent()
        self._sleep(seconds)
        if self.stop_requested.is_set():
            raise StopAgent()

    def retry(self, what: str, action: Callable[[], Any]) -> Any:
        """Run action until it succeeds; back off with jitter after every TransientError."""
        backoff = Backoff(self.config.backoff_initial_s, self.config.backoff_max_s, self.rng)
        while True:
            try:
                return action()
            except TransientError as exc:
                delay = backoff.next_delay()
                LOG.warning("%s failed with a transient error (%s); retrying in %.1f s", what, exc, delay)
                self.sleep(delay)

    # -- start-up -----------------------------------------------------------------------------

    def wait_for_clock(self) -> bool:
        """Wait until the clock is synchronised, at most clock_sync_timeout_s; return whether it is."""
        deadline = self.monotonic() + self.config.clock_sync_timeout_s
        logged = False
        while True:
            synchronized = self.clock_synchronized()
            if synchronized is None:
                synchronized = self.clock() >= PLAUSIBLE_TIME_FLOOR
                reason = "the OS cannot report clock synchronisation and the clock reads before 2026-01-01"
            else:
                reason = "the system clock is not synchronised yet (NTPSynchronized=no)"
            if synchronized:
                if logged:
                    LOG.info("System clock is synchronised; continuing")
                return True

            if self.monotonic() >= deadline:
                LOG.warning(
                    "Gave up waiting for clock synchronisation after %g s: %s; continuing, "
                    "TLS to the control server fails while the date is wrong",
                    self.config.clock_sync_timeout_s,
                    reason,
                )
                return False
            if not logged:
                LOG.info("Waiting for clock synchronisation before enrolling: %s", reason)
                logged = True
            self.sleep(5.0)

    def registration_body(self) -> dict[str, Any]:
        if self.hardware_id is None:
            self.hardware_id = compute_hardware_id()
        self.moonraker_api_key = read_moonraker_api_key(self.config.moonraker_data_path)

        body: dict[str, Any] = {
            "printer_id": self.config.printer_id,
            "hardware_id": self.hardware_id,
            "agent_version": AGENT_VERSION,
        }
        if self.config.region:
            body["region"] = self.config.region
        if self.config.latitude is not None and self.config.longitude is not None:
            body["latitude"] = self.config.latitude
            body["longitude"] = self.config.longitude
        moonraker_version = self.moonraker_info().get("moonraker_version")
        if moonraker_version:
            body["moonraker_version"] = moonraker_version
        if self.moonraker_api_key:
            body["moonraker_api_key"] = self.moonraker_api_key
        return body

    def register(self) -> Assignment:
        """Register with the printer token, or enroll with the enrollment token; return the assignment."""
        while True:
            self.printer_token = read_secret_file(self.config.token_file)
            if self.printer_token:
                token, kind = self.printer_token, "printer token"
            elif self.config.enrollment_token:
                token, kind = self.config.enrollment_token, "enrollment token"
            else:
                raise ConfigError(
                    f"no printer token in {self.config.token_file} and no enrollment_token in the config; "
                    "create an enrollment token on the control server and set enrollment_token"
                )

            body = self.registration_body()
            LOG.info("Registering printer %s with the control server (%s)", self.config.printer_id, kind)
            try:
                answer = self.retry("Registration", lambda: self.client.post("/v1/printers/register", body, token))
            except ControlError as exc:
                if exc.status == 401 and self.printer_token and self.config.enrollment_token:
                    LOG.warning(
                        "Control server rejected the printer token of %s (%s); enrolling again with the enrollment token",
                        self.config.printer_id,
                        exc.message,
                    )
                    self.printer_token = ""
                    try:
                        answer = self.retry(
                            "Enrollment",
                            lambda: self.client.post("/v1/printers/register", body, self.config.enrollment_token),
                        )
                    except ControlError as enroll_exc:
                        self.wait_after_rejection(enroll_exc)
                        continue
                else:
                    self.wait_after_rejection(exc)
                    continue

            new_token = answer.get("printer_token")
            if new_token:
                write_secret_file(self.config.token_file, str(new_token))
                self.printer_token = str(new_token)
                LOG.info("Enrolled printer %s; printer token stored in %s", self.config.printer_id, self.config.token_file)
            elif not self.printer_token:
                LOG.error("Control server enrolled printer %s without sending a printer token; retrying", self.config.printer_id)
                self.sleep(self.config.backoff_max_s)
                continue

            self.heartbeat_interval_s = float(answer.get("heartbeat_interval_s") or self.heartbeat_interval_s)
            try:
                assignment = Assignment.from_json(answer.get("assignment"))
            except ValueError as exc:
                LOG.error("Control server returned an invalid assignment for %s (%s); retrying", self.config.printer_id, exc)
                self.sleep(self.config.backoff_max_s)
                continue
            LOG.info(
                "Printer %s is assigned to frontend %s (share name %s, public URL %s)",
                self.config.printer_id,
                assignment.frontend,
                assignment.share_name,
                assignment.public_url or "unknown",
            )
            return assignment

    def wait_after_rejection(self, exc: ControlError) -> None:
        """Log a definitive rejection of the registration and wait before trying again."""
        if exc.status == 409:
            LOG.error(
                "Printer id %s is enrolled from another machine (%s). The agent never changes its id by itself: "
                "fix printer_id in the config or remove the other printer on the control server. Retrying in %g s",
                self.config.printer_id,
                exc.message,
                self.config.conflict_retry_s,
            )
        else:
            LOG.error(
                "Control server rejected the registration of %s: HTTP %d %s: %s. Retrying in %g s",
                self.config.printer_id,
                exc.status,
                exc.code,
                exc.message,
                self.config.conflict_retry_s,
            )
        self.sleep(self.config.conflict_retry_s)

    # -- zrok ---------------------------------------------------------------------------------

    def ensure_environment(self, assignment: Assignment) -> None:
        """Enable zrok against the assigned instance; disable a different instance's environment first."""
        environment = self.zrok.environment()
        if environment is not None:
            if (
                environment.get("api_endpoint") == assignment.api_endpoint
                and environment.get("zrok_token") == assignment.account_token
            ):
                LOG.info("zrok is already enabled against %s (frontend %s)", assignment.api_endpoint, assignment.frontend)
                return
            LOG.info(
                "zrok is enabled against %s but the assignment is %s; disabling the old environment",
                environment.get("api_endpoint") or "an unknown instance",
                assignment.api_endpoint,
            )
            self.zrok.run(["disable"], purpose="leave the previous instance")

        self.zrok.run(["config", "set", "apiEndpoint", assignment.api_endpoint], purpose="point zrok at the assigned instance")
        self.zrok.run(
            ["enable", "--headless", "-d", f"printer-fleet {self.config.printer_id}", assignment.account_token],
            secrets=[assignment.account_token],
            purpose=f"enable on frontend {assignment.frontend}",
        )

    def ensure_name(self, assignment: Assignment) -> None:
        """Reserve the share name in the public namespace when the account does not hold it yet."""
        if self.account_holds_name(assignment.share_name):
            return
        try:
            self.zrok.run(["create", "name", "-n", "public", assignment.share_name], purpose="reserve the share name")
        except ShareConflictError:
            if not self.account_holds_name(assignment.share_name):
                raise ZrokError(
                    f"share name {assignment.share_name} is taken by another account on frontend {assignment.frontend}"
                ) from None

    def account_holds_name(self, name: str) -> bool:
        names = self.zrok.run_json(["list", "names", "-n", "public", "--json"], purpose="check the share name")
        return any(isinstance(entry, dict) and entry.get("name") == name for entry in names or [])

    def own_shares(self, assignment: Assignment) -> list[dict[str, Any]]:
        """Return this printer's shares on the instance: same environment, or holding its share name."""
        listing = self.zrok.run_json(["list", "shares", "--json"], purpose="find stale shares") or {}
        environment = self.zrok.environment() or {}
        own_zid = environment.get("ziti_identity")
        host_prefix = f"{assignment.share_name}."

        own = []
        for share in listing.get("shares") or []:
            # zrok v2 lists frontend endpoints as bare host names ("name.domain"); accept a URL too.
            hosts = [str(url).split("://", 1)[-1] for url in share.get("frontendEndpoints") or []]
            if (own_zid and share.get("envZId") == own_zid) or any(host.startswith(host_prefix) for host in hosts):
                own.append(share)
        return own

    def remove_stale_shares(self, assignment: Assignment) -> None:
        """Remove shares that hold this printer's name, so that the new share can take it.

        `zrok2 delete share` works only for shares of the current environment. A share of an
        environment that the agent dropped earlier, for example when it left a frontend that was
        down and came back later, is removed by disabling that old environment through the
        controller API.
        """
        own_zid = (self.zrok.environment() or {}).get("ziti_identity")
        disabled: set[str] = set()
        for share in self.own_shares(assignment):
            token = share.get("shareToken")
            share_zid = str(share.get("envZId") or "")
            if share_zid and own_zid and share_zid != own_zid:
                if share_zid not in disabled:
                    LOG.info(
                        "Share %s of printer %s belongs to its earlier environment %s on frontend %s; disabling that environment",
                        token,
                        self.config.printer_id,
                        share_zid,
                        assignment.frontend,
                    )
                    self.zrok_controller.disable_environment(assignment.api_endpoint, assignment.account_token, share_zid)
                    disabled.add(share_zid)
                continue
            if token:
                self.zrok.run(["delete", "share", str(token)], purpose="remove a stale share that holds the name")
                LOG.info("Removed stale share %s of printer %s", token, self.config.printer_id)

    def share_argv(self, assignment: Assignment) -> tuple[list[str], list[str]]:
        argv = [
            "share",
            "public",
            self.config.share_target,
            "-n",
            f"public:{assignment.share_name}",
            "--headless",
            "--force-local",
        ]
        secrets = [assignment.account_token]
        mode = str(assignment.share_auth.get("mode") or "none")
        if mode == "basic":
            username = str(assignment.share_auth.get("username") or "")
            password = str(assignment.share_auth.get("password") or "")
            # NOTE: zrok2 takes basic-auth credentials only as an argument, so local users who can
            # list processes see them in /proc/<pid>/cmdline while the share runs.
            argv += ["--basic-auth", f"{username}:{password}"]
            secrets.append(password)
        elif mode != "none":
            raise ZrokError(f"share_auth mode {mode!r} is not supported by agent {AGENT_VERSION}; expected basic or none")
        return argv, secrets

    def start_share(self, assignment: Assignment) -> None:
        """Enable, reserve the name, remove stale shares and start the share process."""
        self.stop_share()
        self.ensure_environment(assignment)
        self.ensure_name(assignment)
        self.remove_stale_shares(assignment)
        argv, secrets = self.share_argv(assignment)
        self.share = ShareProcess(self.zrok, argv, secrets)
        self.share.start()
        self.share_token = ""
        self.assignment = assignment

    def start_share_with_retry(self, assignment: Assignment, attempts: Optional[int] = None) -> bool:
        """Start sharing and return whether it worked; retry failures with backoff, at most attempts times.

        A failure never deletes anything here. With attempts set, the heartbeat loop keeps running
        after the last failed attempt, reports share_state "failed", and the next tick tries again.
        """
        self.assignment = assignment
        backoff = Backoff(self.config.backoff_initial_s, self.config.backoff_max_s, self.rng)
        attempt = 0
        while True:
            attempt += 1
            try:
                self.start_share(assignment)
                self.share_start_failed = False
                return True
            except (TransientError, ZrokError) as exc:
                self.share_start_failed = True
                if attempts is not None and attempt >= attempts:
                    LOG.error(
                        "Sharing on frontend %s failed %d times (%s); trying again after the next heartbeat",
                        assignment.frontend,
                        attempt,
                        exc,
                    )
                    return False
                delay = backoff.next_delay()
                LOG.warning("Sharing on frontend %s failed (%s); retrying in %.1f s", assignment.frontend, exc, delay)
                self.sleep(delay)

    def stop_share(self) -> None:
        if self.share is not None:
            self.share.stop(self.config.share_stop_timeout_s)
        self.share = None
        self.share_token = ""

    def share_state(self) -> str:
        if self.assignment is None:
            return "none"
        if self.share is None:
            return "failed" if self.share_start_failed else "stopped"
        if not self.share.running():
            return "failed"
        if not self.share_token:
            self.share_token = self.lookup_share_token()
        return "active" if self.share_token else "starting"

    def lookup_share_token(self) -> str:
        if self.assignment is None:
            return ""
        try:
            shares = self.own_shares(self.assignment)
        except (TransientError, ZrokError) as exc:
            LOG.info("Cannot look up the share token yet (%s)", exc)
            return ""
        return str(shares[0].get("shareToken") or "") if shares else ""

    # -- Moonraker and latency ----------------------------------------------------------------

    def moonraker_info(self) -> dict[str, Any]:
        request = urllib.request.Request(self.config.moonraker_url.rstrip("/") + "/server/info")
        if self.moonraker_api_key:
            request.add_header("X-Api-Key", self.moonraker_api_key)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                result = _decode_json(response.read()).get("result")
                return {"moonraker_state": "ok", **(result if isinstance(result, dict) else {})}
        except urllib.error.HTTPError as exc:
            LOG.info("Moonraker /server/info returned HTTP %d", exc.code)
            if exc.code == 401 and self.moonraker_api_key:
                current_key = read_moonraker_api_key(self.config.moonraker_data_path)
                if current_key and current_key != self.moonraker_api_key:
                    LOG.info("Moonraker's API key was rotated; registering again to send the new key")
                    self.moonraker_api_key = current_key
                    self.moonraker_api_key_changed = True
            return {"moonraker_state": "error"}
        except (urllib.error.URLError, OSError):
            return {"moonraker_state": "unreachable"}

    def measure_latency(self) -> dict[str, float]:
        """TCP connect time in milliseconds to the current frontend and each candidate's API endpoint."""
        targets: dict[str, str] = {}
        if self.assignment is not None:
            targets[self.assignment.frontend] = self.assignment.api_endpoint
        for candidate in self.candidates:
            if candidate.get("frontend") and candidate.get("api_endpoint"):
                targets[str(candidate["frontend"])] = str(candidate["api_endpoint"])

        latency: dict[str, float] = {}
        for frontend, endpoint in targets.items():
            parsed = urllib.parse.urlsplit(endpoint)
            if not parsed.hostname:
                continue
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
            milliseconds = self.connect_time_ms(parsed.hostname, port)
            if milliseconds is not None:
                latency[frontend] = milliseconds
        return latency

    # -- heartbeat loop -----------------------------------------------------------------------

    def heartbeat_body(self) -> dict[str, Any]:
        info = self.moonraker_info()
        state = self.share_state()
        return {
            "frontend": self.assignment.frontend if self.assignment else None,
            "share_state": state,
            "share_token": self.share_token or None,
            "moonraker_state": info["moonraker_state"],
            "klippy_state": info.get("klippy_state"),
            "latency_ms": self.measure_latency(),
            "agent_version": AGENT_VERSION,
        }

    def start(self) -> None:
        """Wait for the clock, register and start sharing."""
        LOG.info("Fleet agent %s starting for printer %s", AGENT_VERSION, self.config.printer_id)
        self.write_status(registered=False)
        self.wait_for_clock()
        assignment = self.register()
        self.start_share_with_retry(assignment, attempts=LOOP_SHARE_ATTEMPTS)
        self.write_status(registered=True)

    @property
    def status_file(self) -> str:
        return os.path.join(self.config.state_dir, "status.json")

    def write_status(self, registered: bool) -> None:
        """Write the agent's state to <state_dir>/status.json for operators and the role's rollout check.

        The file contains no secret. Keys are sorted, so "registered" comes before "share_state".
        """
        status = {
            "agent_version": AGENT_VERSION,
            "frontend": self.assignment.frontend if self.assignment else None,
            "pid": os.getpid(),
            "printer_id": self.config.printer_id,
            "public_url": self.assignment.public_url if self.assignment else None,
            "registered": registered,
            "share_state": self.share_state() if registered else "none",
            "updated_at": int(self.clock()),
        }
        try:
            os.makedirs(self.config.state_dir, mode=0o700, exist_ok=True)
            fd, tmp_path = tempfile.mkstemp(prefix=".status-", dir=self.config.state_dir)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(status, handle, indent=1, sort_keys=True)
            os.chmod(tmp_path, 0o644)
            os.replace(tmp_path, self.status_file)
        except OSError as exc:
            LOG.warning("Cannot write %s (%s)", self.status_file, exc)

    def supervise_share(self) -> None:
        """Restart the share process when it exited."""
        if self.assignment is None or (self.share is not None and self.share.running()):
            return
        self.share_failures += 1
        if self.share is not None:
            LOG.warning(
                "Share process for %s exited with status %s; restarting it (restart %d)",
                self.assignment.share_name,
                self.share.exit_status(),
                self.share_failures,
            )
        else:
            LOG.warning("Share %s is not running; starting it (attempt %d)", self.assignment.share_name, self.share_failures)
        self.start_share_with_retry(self.assignment, attempts=LOOP_SHARE_ATTEMPTS)

    def heartbeat(self) -> None:
        """Send one heartbeat and act on the action in the response."""
        assert self.assignment is not None
        body = self.heartbeat_body()
        path = f"/v1/printers/{self.config.printer_id}/heartbeat"
        try:
            answer = self.client.post(path, body, self.printer_token)
        except TransientError as exc:
            # The share keeps running while the control server is unreachable; the next heartbeat
            # comes after a backoff delay instead of the usual interval.
            self.next_heartbeat_delay_s = self.heartbeat_backoff.next_delay()
            LOG.warning(
                "Heartbeat of %s failed with a transient error (%s); keeping the share, next heartbeat in %.1f s",
                self.config.printer_id,
                exc,
                self.next_heartbeat_delay_s,
            )
            return
        except ControlError as exc:
            if exc.status in (401, 403, 404):
                LOG.warning(
                    "Control server rejected the heartbeat of %s (HTTP %d %s); registering again",
                    self.config.printer_id,
                    exc.status,
                    exc.code,
                )
                self.follow_assignment(self.register())
                return
            LOG.error("Heartbeat of %s rejected: HTTP %d %s: %s", self.config.printer_id, exc.status, exc.code, exc.message)
            return

        self.heartbeat_backoff.reset()
        self.next_heartbeat_delay_s = None
        if body["share_state"] == "active":
            self.share_failures = 0
        self.heartbeat_interval_s = float(answer.get("heartbeat_interval_s") or self.heartbeat_interval_s)
        self.candidates = [c for c in answer.get("candidates") or [] if isinstance(c, dict)]
        action = answer.get("action", "stay")
        reason = answer.get("reason") or "no reason given"

        if action == "move":
            self.move(answer.get("assignment"), reason)
        elif action == "restart_share":
            LOG.warning("Control server asks to restart the share of %s: %s", self.config.printer_id, reason)
            self.stop_share()
            self.start_share_with_retry(self.assignment, attempts=LOOP_SHARE_ATTEMPTS)
        elif action == "stay":
            self.follow_assignment_if_changed(answer.get("assignment"))
        else:
            LOG.warning("Control server sent unknown action %r; staying on frontend %s", action, self.assignment.frontend)

        if self.moonraker_api_key_changed:
            self.moonraker_api_key_changed = False
            self.follow_assignment(self.register())

    def follow_assignment_if_changed(self, value: Any) -> None:
        if value is None:
            return
        try:
            assignment = Assignment.from_json(value)
        except ValueError as exc:
            LOG.warning("Ignoring an invalid assignment in the heartbeat answer (%s)", exc)
            return
        if not assignment.same_share(self.assignment):
            LOG.info("Assignment of %s changed without a move order; applying it", self.config.printer_id)
            self.follow_assignment(assignment)
        else:
            self.assignment = assignment

    def follow_assignment(self, assignment: Assignment) -> None:
        if assignment.same_share(self.assignment) and self.share is not None and self.share.running():
            self.assignment = assignment
            return
        self.start_share_with_retry(assignment, attempts=LOOP_SHARE_ATTEMPTS)

    def move(self, value: Any, reason: str) -> None:
        """Move to the new frontend: stop, disable on the old instance, share on the new, confirm."""
        try:
            target = Assignment.from_json(value)
        except ValueError as exc:
            LOG.error("Ignoring a move order with an invalid assignment (%s)", exc)
            return
        old = self.assignment
        LOG.warning(
            "Moving printer %s from frontend %s to %s: %s",
            self.config.printer_id,
            old.frontend if old else "none",
            target.frontend,
            reason,
        )
        self.stop_share()
        self.start_share_with_retry(target, attempts=LOOP_SHARE_ATTEMPTS)

        # Registering again confirms the move even when sharing still fails: the control server
        # then knows the printer left the old frontend, and the heartbeat reports the share state.
        confirmed = self.register()
        LOG.info("Move of %s to frontend %s confirmed by the control server", self.config.printer_id, confirmed.frontend)
        if not confirmed.same_share(self.assignment):
            self.follow_assignment(confirmed)

    def run_forever(self) -> None:
        self.start()
        while True:
            delay = self.next_heartbeat_delay_s
            self.sleep(self.heartbeat_interval_s if delay is None else min(delay, self.heartbeat_interval_s * 4))
            self.supervise_share()
            self.heartbeat()
            self.write_status(registered=True)

    def shutdown(self) -> None:
        """Stop the share process; zrok2 removes its share on SIGTERM, the reserved name stays."""
        self.stop_share()
        self.write_status(registered=False)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="printer-fleet agent: share Moonraker through the fleet's zrok frontends")
    parser.add_argument("--config", default="/etc/printer-fleet-agent/agent.json", help="config file (JSON or INI)")
    parser.add_argument("--check-config", action="store_true", help="validate the config file and exit")
    parser.add_argument("--version", action="version", version=AGENT_VERSION)
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stdout)

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        LOG.error("Invalid configuration: %s", exc)
        return EXIT_CONFIG
    if args.check_config:
        LOG.info("Configuration %s is valid", args.config)
        return 0

    agent = FleetAgent(config)

    def request_stop(signum: int, _frame: Any) -> None:
        LOG.info("Received %s; stopping", signal.Signals(signum).name)
        agent.stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    try:
        agent.run_forever()
    except StopAgent:
        pass
    except ConfigError as exc:
        LOG.error("Invalid configuration: %s", exc)
        return EXIT_CONFIG
    finally:
        agent.shutdown()
    LOG.info("Fleet agent stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
