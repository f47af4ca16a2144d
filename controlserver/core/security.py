"""Tokens: random, high-entropy strings that are stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets

ENROLLMENT_TOKEN_PREFIX = "fleet-enroll-"
PRINTER_TOKEN_PREFIX = "fleet-printer-"


def new_token(prefix: str = "") -> str:
    """Return a token with 256 random bits; the prefix only tells an operator what it is."""
    return prefix + secrets.token_urlsafe(32)


def new_password() -> str:
    return secrets.token_urlsafe(24)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    """Compare a presented token with a stored hash in constant time."""
    return hmac.compare_digest(hash_token(token), stored_hash)
