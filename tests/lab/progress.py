"""Progress lines for long lab steps."""

from __future__ import annotations

import contextlib
import time


@contextlib.contextmanager
def step(title: str):
    """Print the start and the duration of one step."""
    print(f"  - {title} ...", flush=True)
    started = time.monotonic()
    yield
    print(f"    done in {time.monotonic() - started:.1f} s", flush=True)
