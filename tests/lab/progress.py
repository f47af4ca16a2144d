"""Progress lines for long lab steps."""

from __future__ import annotations

import contextlib
import threading
import time

HEARTBEAT_INTERVAL = 30.0


@contextlib.contextmanager
def step(title: str):
    """Print the start and the duration of one step, and a line every 30 s while it runs."""
    print(f"  - {title} ...", flush=True)
    started = time.monotonic()
    finished = threading.Event()

    def heartbeat() -> None:
        while not finished.wait(HEARTBEAT_INTERVAL):
            print(f"    still running after {time.monotonic() - started:.0f} s", flush=True)

    thread = threading.Thread(target=heartbeat, name="lab-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        finished.set()
        thread.join()
    print(f"    done in {time.monotonic() - started:.1f} s", flush=True)
