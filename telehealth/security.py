"""Secrets: passwords and device secrets hashed with argon2; API tokens as SHA-256 of 256 random bits."""

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
