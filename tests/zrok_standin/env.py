"""The local zrok2 environment under `$HOME/.zrok2` and the REST client that uses it.

File names and JSON keys follow zrok v2's environment layout v0.4:
`metadata.json` (`{"v": "v0.4"}`), `config.json` (`api_endpoint`,
`default_namespace`, `headless`, `super_network`), `environment.json`
(`zrok_token`, `ziti_identity`, `api_endpoint`) and
`identities/<name>.json`.
"""

import http.client
import json
import os
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request

from . import ZROK_VERSION

DEFAULT_API_ENDPOINT = "https://api-v2.zrok.io"
MEDIA_TYPE = "application/zrok.v1+json"


class ApiError(Exception):
    """A non-2xx response, worded like zrok2's go-swagger client errors."""

    def __init__(self, method, path, operation, status, payload):
        self.method = method
        self.path = path
        self.status = status
        self.payload = payload
        suffix = _STATUS_SUFFIX.get(status, f"Status{status}")
        text = f"[{method} {path}][{status}] {operation}{suffix}"
        if payload is not None:
            text += " " + json.dumps(payload)
        super().__init__(text)


_STATUS_SUFFIX = {
    400: "BadRequest",
    401: "Unauthorized",
    404: "NotFound",
    409: "Conflict",
    422: "UnprocessableEntity",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
}


def client_version():
    return f"v{ZROK_VERSION} [standin]"


class Root:
    """The environment root directory (`$HOME/.zrok2`)."""

    def __init__(self, home=None):
        home = home or os.environ.get("HOME") or os.path.expanduser("~")
        self.path = os.path.join(home, ".zrok2")

    def _file(self, name):
        return os.path.join(self.path, name)

    def _read(self, name):
        try:
            with open(self._file(name), encoding="utf-8") as handle:
                return json.load(handle)
        except FileNotFoundError:
            return None

    def _write(self, name, data, mode=0o600):
        os.makedirs(os.path.dirname(self._file(name)), mode=0o700, exist_ok=True)
        if not os.path.exists(self._file("metadata.json")):
            self._write_plain("metadata.json", {"v": "v0.4"})
        temporary = self._file(name) + ".tmp"
        with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        os.replace(temporary, self._file(name))

    def _write_plain(self, name, data):
        with open(os.open(self._file(name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as handle:
            json.dump(data, handle)

    # --- config ------------------------------------------------------------

    def config(self):
        return self._read("config.json") or {}

    def set_config(self, key, value):
        cfg = self.config()
        cfg[key] = value
        self._write("config.json", cfg)

    def unset_config(self, key):
        cfg = self.config()
        cfg.pop(key, None)
        self._write("config.json", cfg)

    def api_endpoint(self):
        """Return (endpoint, source) with the real precedence: binary < config < env var < environment."""
        endpoint, source = DEFAULT_API_ENDPOINT, "binary"
        if self.config().get("api_endpoint"):
            endpoint, source = self.config()["api_endpoint"], "config"
        if os.environ.get("ZROK2_API_ENDPOINT"):
            endpoint, source = os.environ["ZROK2_API_ENDPOINT"], "ZROK2_API_ENDPOINT"
        environment = self.environment()
        if environment:
            endpoint, source = environment.get("api_endpoint", endpoint), "env"
        return endpoint, source

    def default_namespace(self):
        namespace, source = "public", "binary"
        if self.config().get("default_namespace"):
            namespace, source = self.config()["default_namespace"], "config"
        if os.environ.get("ZROK2_DEFAULT_NAMESPACE"):
            namespace, source = os.environ["ZROK2_DEFAULT_NAMESPACE"], "ZROK2_DEFAULT_NAMESPACE"
        return namespace, source

    def headless(self):
        if "headless" in self.config():
            return bool(self.config()["headless"]), "config"
        return False, "binary"

    # --- environment ---------------------------------------------------------

    def environment(self):
        return self._read("environment.json")

    def is_enabled(self):
        return self.environment() is not None

    def set_environment(self, token, zid, api_endpoint):
        self._write("environment.json", {"zrok_token": token, "ziti_identity": zid, "api_endpoint": api_endpoint})

    def delete_environment(self):
        try:
            os.remove(self._file("environment.json"))
        except FileNotFoundError:
            pass

    def identity_path(self, name):
        return self._file(os.path.join("identities", f"{name}.json"))

    def save_identity(self, name, cfg_text):
        self._write(os.path.join("identities", f"{name}.json"), json.loads(cfg_text))

    def delete_identity(self, name):
        try:
            os.remove(self.identity_path(name))
        except FileNotFoundError:
            pass

    # --- REST client -----------------------------------------------------------

    def client(self, check_version=True):
        endpoint, _ = self.api_endpoint()
        client = Client(endpoint)
        if check_version:
            try:
                client.call("POST", "/clientVersionCheck", "clientVersionCheck", {"clientVersion": client_version()})
            except (ApiError, OSError) as exc:
                raise ClientError(f"client version error accessing api endpoint '{endpoint}': {exc}") from exc
        return client


class ClientError(Exception):
    """Raised when the zrok API endpoint cannot be used at all."""


class Client:
    """A minimal JSON client for the zrok v2 REST API."""

    def __init__(self, endpoint):
        self.endpoint = endpoint.rstrip("/")
        self.context = ssl.create_default_context()

    def call(self, method, path, operation, body=None, token=None, query=None):
        url = f"{self.endpoint}/api/v2{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": MEDIA_TYPE}
        if data is not None:
            headers["Content-Type"] = MEDIA_TYPE
        if token:
            headers["X-TOKEN"] = token
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30, context=self.context) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            self._raise_api_error(method, path, operation, exc)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise OSError(network_error_text(method, url, exc)) from None
        return json.loads(raw) if raw.strip() else None

    @staticmethod
    def _raise_api_error(method, path, operation, exc):
        raw = exc.read()
        payload = None
        if raw.strip():
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = raw.decode("utf-8", "replace")
        raise ApiError(method, path, operation, exc.code, payload) from None


def network_error_text(method, url, exc):
    """Word a network failure like Go's net/http client, whose text callers of zrok2 match on."""
    reason = getattr(exc, "reason", exc)
    parsed = urllib.parse.urlsplit(url)
    address = f"{parsed.hostname}:{parsed.port or (443 if parsed.scheme == 'https' else 80)}"
    if isinstance(reason, ConnectionRefusedError):
        detail = f"dial tcp {address}: connect: connection refused"
    elif isinstance(reason, ConnectionResetError):
        detail = f"read tcp {address}: read: connection reset by peer"
    elif isinstance(reason, socket.gaierror):
        detail = f"dial tcp: lookup {parsed.hostname}: no such host"
    elif isinstance(reason, (socket.timeout, TimeoutError)):
        detail = f"dial tcp {address}: i/o timeout"
    elif isinstance(reason, http.client.RemoteDisconnected):
        detail = "EOF"
    else:
        detail = str(reason)
    return f'{method} "{url}": {detail}'

