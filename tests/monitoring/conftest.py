"""The control server's fixtures, so that these tests can scrape a real /metrics."""

from tests.controlserver.conftest import api, fleet_files, make_api, zrok_eu, zrok_us  # noqa: F401
