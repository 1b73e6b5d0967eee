"""Pseudonyms keyed per project (HMAC-SHA256), so two projects' pseudonyms cannot be linked."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from uuid import UUID


def new_key() -> bytes:
    """A project's key: random, kept in the database, never released."""
    return secrets.token_bytes(32)


def pseudonym(project_key: bytes, patient_id: UUID) -> str:
    return hmac.new(project_key, patient_id.bytes, hashlib.sha256).hexdigest()[:32]
