"""Nightscout uploaders: a device of kind `uploader` with an API secret and an access token.

Both are shown once when issued; only SHA-256 digests are kept (they carry full entropy, so a
fast digest is enough and a request finds its uploader in one index probe). An uploader never
gets a broker login; revocation is the device's (`devices.revoked_at`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from telehealth.nightscout import api_secret_header, secret_digest
from telehealth.security import new_device_secret
from telehealth.storage.devices import DeviceExists

KIND = "uploader"
#: an uploader posts a CGM's entries every 5 minutes; stale-data alerts follow from this
DEFAULT_INTERVAL_S = 300
#: the broker-password column of an uploader: no broker login can match it
_NO_BROKER_LOGIN = "!nightscout-uploader"


@dataclass(frozen=True)
class UploaderCredentials:
    """Shown once. Clients send `API-SECRET: <api_secret_sha1>` or `?token=<access_token>`."""

    device_id: str
    patient_id: UUID
    api_secret: str
    access_token: str

    @property
    def api_secret_sha1(self) -> str:
        return api_secret_header(self.api_secret)


@dataclass(frozen=True)
class Uploader:
    device_id: str
    patient_id: UUID
    revoked: bool


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.strip().encode()).digest()


def _issue(device_id: str, patient_id: UUID) -> tuple[UploaderCredentials, bytes, bytes]:
    creds = UploaderCredentials(
        device_id=device_id,
        patient_id=patient_id,
        api_secret=new_device_secret(),
        # Nightscout's access tokens read `<subject>-<random>`; the subject here is the device
        access_token=f"{device_id}-{secrets.token_hex(16)}",
    )
    return creds, secret_digest(creds.api_secret_sha1), token_digest(creds.access_token)


async def provision(
    conn: psycopg.AsyncConnection[Any],
    *,
    device_id: str,
    patient_id: UUID,
    expected_interval_s: int | None = None,
) -> UploaderCredentials:
    creds, secret, token = _issue(device_id, patient_id)
    try:
        async with conn.transaction():
            await conn.execute(
                """INSERT INTO devices (id, patient_id, kind, secret_hash, expected_interval_s)
                   VALUES (%s, %s, %s, %s, %s)""",
                (device_id, patient_id, KIND, _NO_BROKER_LOGIN, expected_interval_s or DEFAULT_INTERVAL_S),
            )
            await conn.execute(
                """INSERT INTO uploader_credentials (device_id, secret_digest, token_digest)
                   VALUES (%s, %s, %s)""",
                (device_id, secret, token),
            )
    except psycopg.errors.UniqueViolation as exc:
        raise DeviceExists(f"device {device_id} is already provisioned") from exc
    return creds


async def is_uploader(conn: psycopg.AsyncConnection[Any], device_id: str) -> bool:
    cur = await conn.execute("SELECT kind FROM devices WHERE id = %s", (device_id,))
    row = await cur.fetchone()
    if row is None:
        return False
    kind = row["kind"] if isinstance(row, dict) else row[0]
    return bool(kind == KIND)


async def reissue(
    conn: psycopg.AsyncConnection[Any], device_id: str, patient_id: UUID | None = None
) -> UploaderCredentials:
    """New secret and token (the old ones stop working), optionally for another patient."""
    async with conn.transaction():
        cur = await conn.execute(
            """UPDATE devices SET patient_id = coalesce(%s, patient_id), state = NULL, state_at = NULL
               WHERE id = %s AND kind = %s AND revoked_at IS NULL RETURNING patient_id""",
            (patient_id, device_id, KIND),
        )
        row = await cur.fetchone()
        if row is None:
            raise LookupError(f"no active uploader {device_id!r}")
        owner = row["patient_id"] if isinstance(row, dict) else row[0]
        creds, secret, token = _issue(device_id, owner)
        await conn.execute(
            """UPDATE uploader_credentials SET secret_digest = %s, token_digest = %s, issued_at = now()
               WHERE device_id = %s""",
            (secret, token, device_id),
        )
        await conn.execute("DELETE FROM uploader_sessions WHERE device_id = %s", (device_id,))
    return creds


async def find(
    conn: psycopg.AsyncConnection[Any], *, secret: bytes | None = None, token: bytes | None = None
) -> Uploader | None:
    """The uploader holding this secret or token digest, or an unexpired session token of
    this digest (revoked ones too: the caller refuses)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """SELECT d.id, d.patient_id, d.revoked_at FROM uploader_credentials c
               JOIN devices d ON d.id = c.device_id
               WHERE c.secret_digest = %s OR c.token_digest = %s
               UNION ALL
               SELECT d.id, d.patient_id, d.revoked_at FROM uploader_sessions s
               JOIN devices d ON d.id = s.device_id
               WHERE s.digest = %s AND s.expires_at > now()
               LIMIT 1""",
            (secret, token, token),
        )
        row = await cur.fetchone()
    if row is None:
        return None
    return Uploader(row["id"], row["patient_id"], row["revoked_at"] is not None)


#: how long a session token from `/api/v2/authorization/request` lasts (Nightscout's JWT: 8 h)
SESSION_TTL = timedelta(hours=8)


async def open_session(conn: psycopg.AsyncConnection[Any], device_id: str) -> tuple[str, datetime, datetime]:
    """A new session token for the uploader, shown once: (token, issued at, expires at).

    It reads as a JWT (header, then `sub`, `iat`, `exp` a client may decode) but its third part
    is 256 random bits, not a signature: the server knows a token by its digest in the table,
    so there is no signing key to keep or leak, and revocation is immediate."""
    issued = datetime.now(UTC).replace(microsecond=0)
    expires = issued + SESSION_TTL
    claims = {"sub": device_id, "iat": int(issued.timestamp()), "exp": int(expires.timestamp())}
    token = ".".join((_b64({"alg": "none", "typ": "JWT"}), _b64(claims), secrets.token_urlsafe(32)))
    await conn.execute("DELETE FROM uploader_sessions WHERE expires_at <= now()")
    await conn.execute(
        "INSERT INTO uploader_sessions (digest, device_id, expires_at) VALUES (%s, %s, %s)",
        (token_digest(token), device_id, expires),
    )
    return token, issued, expires


def _b64(value: dict[str, Any]) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
