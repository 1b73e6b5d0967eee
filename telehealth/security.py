"""Secrets: people's passwords hashed with argon2; machine-made secrets (API tokens, device
passwords), which carry full entropy, as SHA-256 digests."""

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


def device_secret_digest(secret: str) -> str:
    """192 random bits need no slow hash, and provisioning ten thousand devices stays fast."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()
