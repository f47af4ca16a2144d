"""A small client for the stand-in OpenZiti management API, used by `ziti edge` and the zrok controller."""

import json
import urllib.error
import urllib.parse
import urllib.request


class ZitiError(Exception):
    """Raised when the management API cannot be reached or rejects a request."""


def base_url(url):
    """Return the plain-HTTP base URL of a controller given as `https://host:port[/...]` or `host:port`."""
    if "://" not in url:
        url = "https://" + url
    parsed = urllib.parse.urlsplit(url)
    port = parsed.port or 1280
    return f"http://{parsed.hostname}:{port}"


class ManagementClient:
    def __init__(self, url, token=None):
        self.base = base_url(url)
        self.token = token

    def request(self, method, path, body=None, query=None):
        url = f"{self.base}/edge/management/v1/{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            headers["zt-session"] = self.token
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=data, method=method, headers=headers), timeout=15) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw or b"{}")
            except ValueError:
                return exc.code, {"error": {"message": raw.decode("utf-8", "replace")}}
        except OSError as exc:
            raise ZitiError(f"cannot reach the OpenZiti controller at {self.base}: {exc}") from exc

    def login(self, username, password):
        status, answer = self.request("POST", "authenticate", {"username": username, "password": password}, {"method": "password"})
        if status != 200:
            raise ZitiError(f"authentication against {self.base} failed: {answer.get('error', {}).get('message', status)}")
        self.token = answer["data"]["token"]
        return self.token

    def ensure_identity(self, zid, name):
        """Create identity `name` with id `zid` unless one of that name exists; return the identity's id."""
        status, answer = self.request("GET", "identities", query={"filter": f'name="{name}"'})
        if status == 200 and answer.get("data"):
            return answer["data"][0]["id"]
        status, answer = self.request("POST", "identities", {"id": zid, "name": name, "type": "Device", "isAdmin": False, "roleAttributes": []})
        if status not in (200, 201):
            raise ZitiError(f"creating identity '{name}' failed with HTTP {status}: {answer}")
        return answer["data"]["id"]
