"""Release archives of the zrok and OpenZiti stand-ins, served to the Ansible controller over HTTP.

The roles download zrok2 and ziti release archives on the Ansible controller from a base URL and
verify them by sha256, as in production. The lab packs the stand-ins (tests/zrok_standin) into
archives with the real names and layout and serves them on a loopback port while playbooks run;
only the base URLs in the lab's group_vars differ from production.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import threading
from pathlib import Path

from tests.lab import topology

RELEASES_DIR = topology.STATE_DIR / "releases"
# Fixed, so the base URLs can live in the lab's group_vars and an operator can rerun a playbook
# by hand while `python -m tests.lab serve-releases` runs.
HOST = "127.0.0.1"
PORT = 18741
BASE_URL = f"http://{HOST}:{PORT}"


def build() -> dict:
    """Pack the stand-in archives (reproducible, so a rebuild yields the same digests); return the manifest."""
    from tests.zrok_standin import release

    RELEASES_DIR.mkdir(parents=True, exist_ok=True)
    return release.build(str(RELEASES_DIR))


def manifest() -> dict:
    return json.loads((RELEASES_DIR / "manifest.json").read_text())


def role_variables(manifest: dict, arch: str = "amd64") -> dict:
    """Return the install variables of both roles for the archive install method."""
    zrok, ziti = manifest["zrok"], manifest["ziti"]
    values = {}
    for role in ("zrok_frontend", "printer_agent"):
        values.update({
            f"{role}_install_method": "archive",
            f"{role}_zrok_version": zrok["version"],
            f"{role}_zrok_archive_base_url": f"{BASE_URL}/{zrok['path']}",
        })
    values.update({
        "zrok_frontend_ziti_version": ziti["version"],
        "zrok_frontend_ziti_archive_base_url": f"{BASE_URL}/{ziti['path']}",
        # OpenZiti publishes no checksums file, so its digest is pinned like an operator would.
        "zrok_frontend_ziti_archive_sha256": ziti["archives"][arch]["sha256"],
    })
    return values


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass


@contextlib.contextmanager
def serve():
    """Serve RELEASES_DIR on BASE_URL for the duration of the block."""
    handler = functools.partial(_QuietHandler, directory=str(RELEASES_DIR))
    server = http.server.ThreadingHTTPServer((HOST, PORT), handler)
    thread = threading.Thread(target=server.serve_forever, name="lab-releases", daemon=True)
    thread.start()
    try:
        yield BASE_URL
    finally:
        server.shutdown()
        server.server_close()
