"""Secrets: people's passwords hashed with argon2; API tokens, which carry full entropy, as
SHA-256 digests. Device passwords are hashed in the broker's own format (telehealth.broker)."""

from __future__ import annotations

import hashlib
import secrets

from pwdlib import PasswordHash

_hasher = PasswordHash.recommended()


def hash_secret(secret: str) -> str:
    return _hasher.hash(secret)


def verify_secret(secret: str, hashed: str) -> bool:
    return _hasher.verify(secret, hashed)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> bytes:
    """Tokens carry full entropy, so a fast digest is enough and lookups stay O(1)."""
    return hashlib.sha256(token.encode()).digest()


def new_device_secret() -> str:
    return secrets.token_urlsafe(24)
