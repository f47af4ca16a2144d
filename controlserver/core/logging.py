"""Structured logs: one JSON object per line with the event and the printer or frontend involved.

Callers pass context through `extra`, e.g. `log.info("printer assigned", extra={"printer": pid,
"frontend": name})`. Only the keys in CONTEXT_KEYS are written, so a stray secret in `extra` is
never logged.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

CONTEXT_KEYS = (
    "printer", "frontend", "from_frontend", "to_frontend", "reason", "region", "count", "moved",
    "holder", "method", "path", "status", "duration_ms", "error", "detail", "field", "host", "inventory",
    "listen", "database", "url", "failures", "successes", "action", "request_id",
    "operator", "role",
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT_KEYS:
            value = record.__dict__.get(key)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log repeats every request; the request middleware logs errors instead.
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs every probe request at INFO; the monitor logs the failures itself.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
