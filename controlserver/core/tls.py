"""TLS for outgoing HTTPS (frontend and printer probes, zrok admin API)."""

from __future__ import annotations

import ssl
from pathlib import Path


def client_ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verify against the system trust store plus, when given, the CA certificates in `ca_file`."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context
