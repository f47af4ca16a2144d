#!/usr/bin/env python3
"""Klipper stand-in for lab printers: serves Klipper's API socket so Moonraker sees a ready printer.

This is not Klipper. It speaks Klipper's Unix socket protocol (JSON objects, each terminated by
0x03, with `id`/`method`/`params` requests and `result`/`error` responses) well enough for
Moonraker to identify it, subscribe to `webhooks` and report `klippy_state: ready`, and it answers
`objects/query` with a few static printer objects. It drives no hardware.

Usage: klipper_standin.py SOCKET_PATH
"""

import asyncio
import json
import logging
import os
import socket
import sys
import time

ETX = b"\x03"
SOFTWARE_VERSION = "v0.12.0-lab-standin"
DATA_PATH = os.path.expanduser("~/printer_data")

STATUS = {
    "webhooks": {"state": "ready", "state_message": "Printer is ready"},
    "print_stats": {"state": "standby", "filename": "", "total_duration": 0.0},
    "virtual_sdcard": {"is_active": False, "progress": 0.0, "file_path": None},
    "display_status": {"progress": 0.0, "message": None},
    "pause_resume": {"is_paused": False},
    "toolhead": {"homed_axes": "", "position": [0.0, 0.0, 0.0, 0.0]},
    "configfile": {"config": {}, "settings": {}},
}


def handle(method: str, params: dict) -> dict:
    """Return the `result` object for one Klipper API request."""
    if method == "info":
        return {
            "state": "ready",
            "state_message": "Printer is ready",
            "hostname": socket.gethostname(),
            "klipper_path": os.path.dirname(os.path.abspath(__file__)),
            "python_path": sys.executable,
            "process_id": os.getpid(),
            "user_id": os.getuid(),
            "group_id": os.getgid(),
            "log_file": os.path.join(DATA_PATH, "logs/klippy.log"),
            "config_file": os.path.join(DATA_PATH, "config/printer.cfg"),
            "software_version": SOFTWARE_VERSION,
            "cpu_info": "lab stand-in",
        }
    if method == "objects/list":
        return {"objects": sorted(STATUS)}
    if method in ("objects/query", "objects/subscribe"):
        wanted = params.get("objects", {}) or {}
        return {
            "eventtime": time.monotonic(),
            "status": {name: STATUS[name] for name in wanted if name in STATUS},
        }
    if method == "list_endpoints":
        return {"endpoints": ["info", "objects/list", "objects/query", "objects/subscribe"]}
    # gcode/help, gcode/subscribe_output, register_remote_method and anything else: accept.
    return {}


async def serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        try:
            message = await reader.readuntil(ETX)
        except (asyncio.IncompleteReadError, ConnectionError):
            break
        try:
            request = json.loads(message[:-1])
        except ValueError:
            logging.warning("Ignoring a message that is not JSON: %r", message[:80])
            continue
        response = {"id": request.get("id"), "result": handle(request.get("method", ""), request.get("params") or {})}
        writer.write(json.dumps(response).encode() + ETX)
        await writer.drain()
    writer.close()


async def main(path: str) -> None:
    if os.path.exists(path):
        os.unlink(path)
    server = await asyncio.start_unix_server(serve_client, path=path, limit=4 * 1024 * 1024)
    logging.info("Klipper stand-in listening on %s", path)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if len(sys.argv) != 2:
        sys.exit("usage: klipper_standin.py SOCKET_PATH")
    asyncio.run(main(sys.argv[1]))
