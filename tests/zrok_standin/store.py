"""The stand-in controller's store: one JSON document at ctrl.yml's `store.path`.

The real controller keeps its state in SQLite or PostgreSQL. The stand-in
keeps the same records in a JSON file that it rewrites atomically after every
change, so a restarted controller keeps accounts, names and shares (including
stale shares, which is what makes a re-share after SIGKILL fail with 409).
"""

import copy
import hashlib
import json
import os
import secrets
import threading
import time

_EMPTY = {
    "accounts": [],
    "environments": [],
    "frontends": [],
    "identities": [],
    "namespaces": [],
    "namespace_frontends": [],
    "names": [],
    "shares": [],
    "config_types": [],
}


def now_ms():
    return int(time.time() * 1000)


def now_s():
    return int(time.time())


def hash_password(password):
    salt = secrets.token_hex(8)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 100_000).hex()
    return f"pbkdf2-sha256${salt}${digest}"


class Store:
    """Thread-safe access to the JSON store; `with store.transaction() as data:` commits on exit."""

    def __init__(self, path):
        self.path = os.path.abspath(path)
        self._lock = threading.RLock()
        self._mtime_ns = None
        self._data = self._load()

    def _load(self):
        if not os.path.exists(self.path):
            return copy.deepcopy(_EMPTY)
        with open(self.path, encoding="utf-8") as handle:
            data = json.load(handle)
            self._mtime_ns = os.fstat(handle.fileno()).st_mtime_ns
        for key, value in _EMPTY.items():
            data.setdefault(key, copy.deepcopy(value))
        return data

    def exists(self):
        return os.path.exists(self.path)

    def save(self):
        with self._lock:
            directory = os.path.dirname(self.path)
            os.makedirs(directory, exist_ok=True)
            temporary = f"{self.path}.tmp"
            with open(temporary, "w", encoding="utf-8") as handle:
                json.dump(self._data, handle, indent=1, sort_keys=True)
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.path)
            self._mtime_ns = os.stat(self.path).st_mtime_ns

    def refresh(self):
        """Reload the file when another process (such as `zrok2 admin bootstrap`) rewrote it."""
        with self._lock:
            try:
                mtime_ns = os.stat(self.path).st_mtime_ns
            except FileNotFoundError:
                return
            if mtime_ns != self._mtime_ns:
                self._data = self._load()

    def read(self):
        """Return the live data, reloaded if the file changed; callers must hold `lock` while reading."""
        self.refresh()
        return self._data

    @property
    def lock(self):
        return self._lock

    def transaction(self):
        return _Transaction(self)


class _Transaction:
    def __init__(self, store):
        self.store = store

    def __enter__(self):
        self.store.lock.acquire()
        self.store.refresh()
        self.snapshot = copy.deepcopy(self.store._data)
        return self.store._data

    def __exit__(self, exc_type, exc, traceback):
        try:
            if exc_type is None:
                self.store.save()
            else:
                self.store._data = self.snapshot
        finally:
            self.store.lock.release()
        return False
