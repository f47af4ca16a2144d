"""The control server's fixtures, so that these tests can scrape a real /metrics."""

from tests.controlserver.conftest import (  # noqa: F401  (fixtures)
    api,
    database_engine,
    database_url,
    fleet_files,
    make_api,
    postgres_cluster,
    zrok_eu,
    zrok_us,
)
