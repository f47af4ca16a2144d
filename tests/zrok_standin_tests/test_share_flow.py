"""The zrok2 CLI flow of a printer and the public path frontend -> router -> share -> local server."""

import base64
import hashlib
import http.client
import json
import os
import signal
import socket

import pytest

from .conftest import DOMAIN, wait_for_line
from .servers import LocalServer


def public_request(instance, name, method="GET", path="/server/info", headers=None, body=None):
    """Send one request to the frontend as the TLS proxy in front of it would; return (status, headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", instance.frontend_port, timeout=60)
    all_headers = {"Host": f"{name}.{DOMAIN}:443"}
    all_headers.update(headers or {})
    try:
        connection.request(method, path, body=body, headers=all_headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.fixture
def printer_server():
    server = LocalServer("printer-a")
    yield server
    server.close()


def test_enable_rejects_second_enable(instance):
    home = instance.enabled_home("enable-twice")
    token = instance.new_account("enable-twice-2@fleet.test")

    again = instance.zrok2(home, "enable", "--headless", "-d", "again", token, check=False)

    assert again.returncode == 1
    assert "you already have an enabled environment" in again.stderr
    assert os.path.exists(os.path.join(home, ".zrok2", "environment.json"))


def test_disable_removes_environment_and_shares(instance, printer_server):
    home = instance.enabled_home("disable-1")
    instance.zrok2(home, "create", "name", "-n", "public", "p-disable-1")
    share = instance.start_share(home, "p-disable-1", printer_server.url)
    instance.processes.stop(share, signal.SIGKILL)
    token = json.load(open(os.path.join(home, ".zrok2", "environment.json")))["zrok_token"]

    disabled = instance.zrok2(home, "disable")
    other_home = instance.home("disable-1-again")
    instance.zrok2(other_home, "config", "set", "apiEndpoint", instance.api_endpoint)
    instance.zrok2(other_home, "enable", "--headless", token)

    assert "zrok environment disabled..." in disabled.stdout
    assert not os.path.exists(os.path.join(home, ".zrok2", "environment.json"))
    assert instance.shares(other_home) == []


def test_share_routes_by_host_to_its_printer(instance, printer_server):
    other_server = LocalServer("printer-b")
    home_a = instance.enabled_home("route-a")
    home_b = instance.enabled_home("route-b")
    instance.zrok2(home_a, "create", "name", "-n", "public", "p-route-a")
    instance.zrok2(home_b, "create", "name", "-n", "public", "p-route-b")
    share_a = instance.start_share(home_a, "p-route-a", printer_server.url)
    share_b = instance.start_share(home_b, "p-route-b", other_server.url)
    try:
        status_a, _, body_a = public_request(instance, "p-route-a", headers={"X-Real-Ip": "198.51.100.7", "X-Forwarded-For": "198.51.100.7"})
        status_b, _, body_b = public_request(instance, "p-route-b")
        listed = instance.shares(home_a)
    finally:
        instance.processes.stop(share_a)
        instance.processes.stop(share_b)
        other_server.close()

    answer_a = json.loads(body_a)
    assert status_a == 200
    assert answer_a["server"] == "printer-a"
    assert answer_a["host"] == f"p-route-a.{DOMAIN}:443"
    assert answer_a["x_real_ip"] == "198.51.100.7"
    assert answer_a["x_forwarded_for"] == "198.51.100.7, 127.0.0.1"
    assert answer_a["x_proxy"] == "zrok"
    assert status_b == 200
    assert json.loads(body_b)["server"] == "printer-b"
    assert [s["frontendEndpoints"] for s in listed] == [[f"p-route-a.{DOMAIN}"]]
    assert listed[0]["target"] == printer_server.url


def test_unknown_host_returns_404(instance):
    status, _, body = public_request(instance, "no-such-printer")

    assert status == 404
    assert b"share not found" in body


def test_bare_ip_host_returns_404(instance):
    connection = http.client.HTTPConnection("127.0.0.1", instance.frontend_port, timeout=30)
    connection.request("GET", "/")
    response = connection.getresponse()

    assert response.status == 404


def test_basic_auth_enforced_by_frontend(instance, printer_server):
    home = instance.enabled_home("auth-1")
    instance.zrok2(home, "create", "name", "-n", "public", "p-auth-1")
    share = instance.start_share(home, "p-auth-1", printer_server.url, "--basic-auth", "fleet:s3cret")
    credentials = "Basic " + base64.b64encode(b"fleet:s3cret").decode()
    wrong = "Basic " + base64.b64encode(b"fleet:wrong").decode()
    try:
        missing_status, missing_headers, _ = public_request(instance, "p-auth-1")
        wrong_status, _, _ = public_request(instance, "p-auth-1", headers={"Authorization": wrong})
        good_status, _, good_body = public_request(instance, "p-auth-1", headers={"Authorization": credentials})
    finally:
        instance.processes.stop(share)

    assert missing_status == 401
    assert missing_headers["WWW-Authenticate"].startswith('Basic realm="')
    assert wrong_status == 401
    assert good_status == 200
    assert json.loads(good_body)["server"] == "printer-a"


def test_sigkill_leaves_stale_share_holding_name(instance, printer_server):
    home = instance.enabled_home("stale-1")
    instance.zrok2(home, "create", "name", "-n", "public", "p-stale-1")
    share = instance.start_share(home, "p-stale-1", printer_server.url)
    instance.processes.stop(share, signal.SIGKILL)

    stale = instance.shares(home)
    gateway_status, _, _ = public_request(instance, "p-stale-1")
    conflict = instance.zrok2(home, "share", "public", printer_server.url, "-n", "public:p-stale-1", "--headless", check=False)

    assert len(stale) == 1
    assert gateway_status == 502
    assert conflict.returncode == 1
    assert "[409] shareConflict" in conflict.stderr
    assert "is already in use by another share" in conflict.stderr


def test_deleting_stale_share_allows_new_share(instance, printer_server):
    home = instance.enabled_home("stale-2")
    instance.zrok2(home, "create", "name", "-n", "public", "p-stale-2")
    share = instance.start_share(home, "p-stale-2", printer_server.url)
    instance.processes.stop(share, signal.SIGKILL)
    stale_token = instance.shares(home)[0]["shareToken"]

    deleted = instance.zrok2(home, "delete", "share", stale_token)
    share = instance.start_share(home, "p-stale-2", printer_server.url)
    try:
        status, _, body = public_request(instance, "p-stale-2")
        listed = instance.shares(home)
    finally:
        instance.processes.stop(share)

    assert f"deleted share '{stale_token}'" in deleted.stdout
    assert status == 200
    assert json.loads(body)["server"] == "printer-a"
    assert [s["shareToken"] for s in listed] != [stale_token]
    assert len(listed) == 1


def test_sigterm_deletes_share(instance, printer_server):
    home = instance.enabled_home("term-1")
    instance.zrok2(home, "create", "name", "-n", "public", "p-term-1")
    share = instance.start_share(home, "p-term-1", printer_server.url)

    instance.processes.stop(share, signal.SIGTERM)

    assert share.returncode == 0
    assert instance.shares(home) == []


def test_large_upload_streams_through(instance, printer_server):
    size = int(os.environ.get("ZROK_STANDIN_UPLOAD_MIB", "256")) * 1024 * 1024
    home = instance.enabled_home("upload-1")
    instance.zrok2(home, "create", "name", "-n", "public", "p-upload-1")
    share = instance.start_share(home, "p-upload-1", printer_server.url)
    block = hashlib.sha256(b"seed").digest() * 32768  # 1 MiB
    digest = hashlib.sha256()

    def body():
        sent = 0
        while sent < size:
            piece = block[: min(len(block), size - sent)]
            digest.update(piece)
            sent += len(piece)
            yield piece

    try:
        status, _, answer = public_request(
            instance, "p-upload-1", method="POST", path="/server/files/upload", headers={"Content-Length": str(size)}, body=body()
        )
        peak_kib = {name: peak_rss_kib(process.pid) for name, process in (("frontend", instance.frontend), ("router", instance.router), ("share", share))}
    finally:
        instance.processes.stop(share)

    result = json.loads(answer)
    assert status == 200
    assert result["received"] == size
    assert result["sha256"] == digest.hexdigest()
    for name, kib in peak_kib.items():
        assert kib < size // 1024 // 2, f"{name} peaked at {kib} KiB while relaying {size // 1024} KiB"


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmHWM for pid {pid}")


def test_websocket_upgrade_relays_both_ways(instance, printer_server):
    home = instance.enabled_home("ws-1")
    instance.zrok2(home, "create", "name", "-n", "public", "p-ws-1")
    share = instance.start_share(home, "p-ws-1", printer_server.url)
    try:
        sock = socket.create_connection(("127.0.0.1", instance.frontend_port), timeout=30)
        sock.sendall(
            f"GET /websocket HTTP/1.1\r\nHost: p-ws-1.{DOMAIN}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".encode()
        )
        reader = sock.makefile("rb")
        status_line = reader.readline()
        while reader.readline() not in (b"\r\n", b""):
            pass
        sock.sendall(b"first\n")
        first = reader.readline()
        sock.sendall(b"second\n")
        second = reader.readline()
        sock.close()
    finally:
        instance.processes.stop(share)

    assert status_line.startswith(b"HTTP/1.1 101")
    assert first == b"echo:first\n"
    assert second == b"echo:second\n"


def test_unreachable_controller_reads_like_go(instance):
    home = instance.home("unreachable-1")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    instance.zrok2(home, "config", "set", "apiEndpoint", f"http://127.0.0.1:{closed_port}")

    result = instance.zrok2(home, "enable", "--headless", "some-token", check=False)

    assert result.returncode == 1
    assert f"dial tcp 127.0.0.1:{closed_port}: connect: connection refused" in result.stderr
    assert not os.path.exists(os.path.join(home, ".zrok2", "environment.json"))


def test_share_rebinds_after_router_restart(instance, printer_server):
    home = instance.enabled_home("rebind-1")
    instance.zrok2(home, "create", "name", "-n", "public", "p-rebind-1")
    share = instance.start_share(home, "p-rebind-1", printer_server.url)
    try:
        instance.processes.stop(instance.router)
        instance.start_router()
        wait_for_line(share.log_path, "bound again", share)
        wait_for_line(instance.controller.log_path, "'dynamicProxyController' bound again", instance.controller)
        status, _, body = public_request(instance, "p-rebind-1")
    finally:
        instance.processes.stop(share)

    assert status == 200
    assert json.loads(body)["server"] == "printer-a"
