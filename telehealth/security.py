"""Secrets: people's passwords hashed with argon2; API tokens, which carry full entropy, as
SHA-256 digests. Device passwords are hashed in the broker's own format (telehealth.broker)."""

from __future__ import annotations

import functools
import hashlib
import os
import secrets

from anyio import CapacityLimiter, to_thread
from pwdlib import PasswordHash

_hasher = PasswordHash.recommended()


def hash_secret(secret: str) -> str:
    return _hasher.hash(secret)


def verify_secret(secret: str, hashed: str) -> bool:
    return _hasher.verify(secret, hashed)


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


_limiter: CapacityLimiter | None = None


def _argon2_slots() -> CapacityLimiter:
    """At most half the cores hash at once: more threads would not log anyone in sooner, and
    would starve the event loop's thread of CPU (health checks, alert pushes)."""
    global _limiter
    if _limiter is None:
        _limiter = CapacityLimiter(max(1, (os.cpu_count() or 2) // 2))
    return _limiter


async def hash_password(password: str) -> str:
    """argon2 takes a few hundred milliseconds of CPU: run it on a worker thread, never the loop."""
    return await to_thread.run_sync(hash_secret, password, limiter=_argon2_slots())


async def check_password(password: str, hashed: str | None) -> bool:
    """Verify off the event loop; with no hash (unknown user, no password set) verify against a
    dummy hash anyway, so that answering takes as long as for a real user."""
    slots = _argon2_slots()
    if hashed is None:
        dummy = await to_thread.run_sync(_dummy_hash, limiter=slots)
        await to_thread.run_sync(verify_secret, password, dummy, limiter=slots)
        return False
    return await to_thread.run_sync(verify_secret, password, hashed, limiter=slots)


def url_safe_secret(nbytes: int) -> str:
    """`secrets.token_urlsafe`, never starting with "-": pasted after a command-line option
    (`--token X`, `--password X`) such a secret would be taken for an option, one time in 64."""
    while (secret := secrets.token_urlsafe(nbytes)).startswith("-"):
        pass
    return secret


def new_token() -> str:
    return url_safe_secret(32)


def token_digest(token: str) -> bytes:
    """Tokens carry full entropy, so a fast digest is enough and lookups stay O(1)."""
    return hashlib.sha256(token.encode()).digest()


def new_device_secret() -> str:
    return url_safe_secret(24)
