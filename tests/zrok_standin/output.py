"""Log lines, tables and tokens shaped like the real zrok2 and ziti output."""

import datetime
import json
import os
import secrets
import string
import sys
import time

_START = time.monotonic()
_TOKEN_ALPHABET = string.ascii_lowercase + string.digits


def new_token(length=12):
    """Return a random token of lowercase letters and digits, like zrok's share and account tokens."""
    return "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(length))


def log(level, message, stream=None):
    """Write one log line the way zrok2's `dl` logger does.

    The real logger writes to stdout: JSON lines when stdout is not a terminal
    (as under Ansible or systemd), otherwise `[   1.234]    INFO message`.
    """
    stream = stream or sys.stdout
    use_json = not stream.isatty()
    override = os.environ.get("DL_USE_JSON")
    if override:
        use_json = override.lower() in ("1", "true", "t", "yes")
    if use_json:
        record = {
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "level": level.upper(),
            "msg": message,
        }
        stream.write(json.dumps(record) + "\n")
    else:
        elapsed = time.monotonic() - _START
        stream.write(f"[{elapsed:8.3f}] {level.upper():>7} {message}\n")
    stream.flush()


def info(message):
    log("info", message)


def warn(message):
    log("warning", message)


def error(message):
    log("error", message)


def tui_error(message, detail=None):
    """Print an error the way zrok2's `tui.Error` does and exit with status 1."""
    if detail:
        sys.stderr.write(f"[ERROR]: {message} ({str(detail).strip()})\n")
    else:
        sys.stderr.write(f"[ERROR] {message}\n")
    sys.stderr.flush()
    raise SystemExit(1)


def render_table(header, rows):
    """Return a table drawn like go-pretty's StyleRounded, with upper-case headers."""
    header = [str(cell).upper() for cell in header]
    rows = [["" if cell is None else _cell(cell) for cell in row] for row in rows]
    widths = [len(cell) for cell in header]
    for row in rows:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))

    def line(left, middle, right):
        return left + middle.join("─" * (width + 2) for width in widths) + right

    def row_text(cells):
        return "│" + "│".join(f" {cell:<{widths[i]}} " for i, cell in enumerate(cells)) + "│"

    out = [line("╭", "┬", "╮"), row_text(header), line("├", "┼", "┤")]
    out.extend(row_text(row) for row in rows)
    out.append(line("╰", "┴", "╯"))
    return "\n".join(out)


def _cell(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def unix_to_text(seconds):
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")
