"""Cases reported from running fleets that no other control-server test covers on its own.

docs/control-server.md ("Field reports and their tests") lists which test covers which case.
"""

from __future__ import annotations

import asyncio

from controlserver.services.monitor import Monitor
from tests.controlserver.conftest import NEAR_EU

DATABASE_ENGINES = ("sqlite", "postgresql")


def test_public_url_502_restarts_share(make_api, fleet_files):
    # The share looks active on the printer, but its public URL returns 502.
    api = make_api(printer_probe_failures=1)
    token = api.register(api.enrollment_token(), "printer-0001", **NEAR_EU).json()["printer_token"]
    assert api.heartbeat(token, "printer-0001", "eu-1").json()["action"] == "stay"
    public_side = fleet_files["zrok"]["eu-1"]
    public_side.healthy = False
    monitor = Monitor(api.app.state.fleet)

    probed = monitor._printer_page("")
    # NOTE: the probe URL is https://p-<id>.<share domain>, which does not resolve on a test
    # machine, so the probe's HTTP request goes to the fake frontend's address instead.
    error = asyncio.run(_probe_once(monitor, f"{public_side.url}/server/info"))
    monitor._record_printer_results({"printer-0001": error})
    told = api.heartbeat(token, "printer-0001", "eu-1").json()
    after = api.heartbeat(token, "printer-0001", "eu-1").json()

    assert [row[0] for row in probed] == ["printer-0001"]
    assert error == "HTTP 502"
    assert told["action"] == "restart_share"
    assert told["assignment"]["frontend"] == "eu-1"
    assert after["action"] == "stay"
    assert api.printer("printer-0001")["frontend"] == "eu-1"


def test_probe_accepts_auth_rejections(make_api, fleet_files):
    # 401 and 403 come from the share's basic auth or Moonraker, so the share itself works.
    api = make_api()
    monitor = Monitor(api.app.state.fleet)
    public_side = fleet_files["zrok"]["eu-1"]

    reachable = asyncio.run(_probe_once(monitor, f"{public_side.url}/healthz"))
    missing = asyncio.run(_probe_once(monitor, f"{public_side.url}/no-such-share"))

    assert reachable is None
    assert missing == "HTTP 404"


async def _probe_once(monitor: Monitor, url: str) -> str | None:
    try:
        return await monitor._get(url, accept=(401, 403))
    finally:
        if monitor._client is not None:
            await monitor._client.aclose()
            monitor._client = None
