#!/usr/bin/env python3
"""A fake zrok2 CLI for the fleet agent's tests.

It implements the verbs the agent uses with the argument syntax and error texts of zrok2 2.0.4,
keeps the simulated controllers' state (names, shares) in the JSON file named by FAKE_ZROK_STATE,
keeps the local environment in $HOME/.zrok2 like the real CLI, and appends every call's argv to
the JSONL file named by FAKE_ZROK_CALLS.

Fault injection: the state file's "fail" maps a verb ("enable", "list shares", "share public", ...)
to an HTTP status that the simulated controller returns for it.
"""

import fcntl
import json
import os
import secrets
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path

STATE_PATH = Path(os.environ["FAKE_ZROK_STATE"])
CALLS_PATH = Path(os.environ["FAKE_ZROK_CALLS"])
ZROK_DIR = Path(os.environ["HOME"]) / ".zrok2"
ENVIRONMENT_FILE = ZROK_DIR / "environment.json"
CONFIG_FILE = ZROK_DIR / "config.json"


@contextmanager
def locked_state():
    """Yield the shared controller state under an exclusive lock and save it afterwards."""
    lock_path = STATE_PATH.with_suffix(".lock")
    with open(lock_path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = json.loads(STATE_PATH.read_text()) if STATE_PATH.exists() else {}
        state.setdefault("instances", {})
        state.setdefault("fail", {})
        yield state
        tmp_path = STATE_PATH.with_suffix(".tmp")
        tmp_path.write_text(json.dumps(state, indent=1))
        os.replace(tmp_path, STATE_PATH)


def fail(message, status=1):
    print(f"[ERROR]: {message}", file=sys.stderr)
    sys.exit(status)


def instance(state, endpoint):
    return state["instances"].setdefault(endpoint, {"names": {}, "shares": []})


def share_domain(endpoint):
    host = endpoint.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    return host[len("api."):] if host.startswith("api.") else host


def load_environment():
    if not ENVIRONMENT_FILE.exists():
        fail("unable to create share (unable to load environment; did you 'zrok2 enable'?)")
    return json.loads(ENVIRONMENT_FILE.read_text())


def check_fault(state, verb, what):
    status = state["fail"].get(verb)
    if status:
        fail(f"{what} ([{verb}][{status}] controller unavailable)")


def main(argv):
    with open(CALLS_PATH, "a") as calls:
        calls.write(json.dumps(argv) + "\n")

    verb = " ".join(argv[:2])

    if verb == "config set":
        ZROK_DIR.mkdir(exist_ok=True)
        config = json.loads(CONFIG_FILE.read_text()) if CONFIG_FILE.exists() else {}
        config["api_endpoint"] = argv[3]
        CONFIG_FILE.write_text(json.dumps(config))
        print(f"[SUCCESS]: updated apiEndpoint = {argv[3]}")
        return

    if argv[0] == "enable":
        if ENVIRONMENT_FILE.exists():
            fail("you already have an enabled environment, zrok2 disable first before you zrok2 enable")
        endpoint = json.loads(CONFIG_FILE.read_text())["api_endpoint"]
        with locked_state() as state:
            check_fault(state, "enable", "the zrok service returned an error")
        ENVIRONMENT_FILE.write_text(
            json.dumps({"zrok_token": argv[-1], "ziti_identity": "z" + secrets.token_hex(4), "api_endpoint": endpoint})
        )
        print("the zrok environment was successfully enabled...")
        return

    if argv[0] == "disable":
        if not ENVIRONMENT_FILE.exists():
            fail("no environment found; nothing to disable!")
        environment = json.loads(ENVIRONMENT_FILE.read_text())
        with locked_state() as state:
            if state["fail"].get("disable"):
                print("WARNING share cleanup failed; will clean up local environment", file=sys.stderr)
            else:
                shares = instance(state, environment["api_endpoint"])["shares"]
                shares[:] = [s for s in shares if s["envZId"] != environment["ziti_identity"]]
        ENVIRONMENT_FILE.unlink()
        print("zrok environment disabled...")
        return

    environment = load_environment()
    account = environment["zrok_token"]
    endpoint = environment["api_endpoint"]

    if verb == "list names":
        with locked_state() as state:
            check_fault(state, "list names", "panic: list names")
            names = instance(state, endpoint)["names"]
            owned = [{"name": n, "namespaceToken": "public", "reserved": True} for n, a in names.items() if a == account]
        print()
        print(json.dumps(owned, indent=2))
        return

    if verb == "create name":
        name = argv[-1]
        with locked_state() as state:
            check_fault(state, "create name", "unable to create name")
            names = instance(state, endpoint)["names"]
            if name in names:
                fail("unable to create name ([POST /share/name][409] createShareNameConflict)")
            names[name] = account
        print(f"created name '{name}' in namespace 'public'")
        return

    if verb == "list shares":
        with locked_state() as state:
            check_fault(state, "list shares", "panic: list shares")
            shares = [s for s in instance(state, endpoint)["shares"] if s["account"] == account]
        print(json.dumps({"shares": [{k: v for k, v in s.items() if k != "account"} for s in shares]}, indent=2))
        return

    if verb == "delete share":
        token = argv[2]
        with locked_state() as state:
            check_fault(state, "delete share", "unable to delete share")
            shares = instance(state, endpoint)["shares"]
            # zrok deletes only shares of the current environment and returns 404 for any other.
            if not any(s["shareToken"] == token and s["envZId"] == environment["ziti_identity"] for s in shares):
                fail(f"unable to delete share ([DELETE /unshare][404] unshareNotFound)")
            shares[:] = [s for s in shares if s["shareToken"] != token]
        print(f"deleted share '{token}'")
        return

    if verb == "share public":
        share_public(argv, environment)
        return

    fail(f"fake zrok2 does not implement {argv!r}", 2)


def share_public(argv, environment):
    target = argv[2]
    name = argv[argv.index("-n") + 1].split(":", 1)[1]
    endpoint = environment["api_endpoint"]
    token = "shr" + secrets.token_hex(4)

    with locked_state() as state:
        check_fault(state, "share public", "unable to create share")
        data = instance(state, endpoint)
        if data["names"].get(name) != environment["zrok_token"]:
            fail(f"unable to create share ([POST /share][404] shareNotFound) name '{name}' not reserved")
        if any(url.startswith(f"{name}.") for s in data["shares"] for url in s["frontendEndpoints"]):
            fail("unable to create share ([POST /share][409] shareConflict)")
        data["shares"].append(
            {
                "shareToken": token,
                "envZId": environment["ziti_identity"],
                # zrok v2 lists endpoints as bare host names, without a scheme.
                "frontendEndpoints": [f"{name}.{share_domain(endpoint)}"],
                "target": target,
                "shareMode": "public",
                "backendMode": "proxy",
                "account": environment["zrok_token"],
                "pid": os.getpid(),
            }
        )

    def unshare(_signum, _frame):
        with locked_state() as state:
            shares = instance(state, endpoint)["shares"]
            shares[:] = [s for s in shares if s["shareToken"] != token]
        sys.exit(0)

    signal.signal(signal.SIGTERM, unshare)
    print(f"access your zrok share at the following endpoints: https://{name}.{share_domain(endpoint)}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv[1:])
