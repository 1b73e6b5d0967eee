"""Device provisioning and the registry the gateway and processor check against."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import UUID

import psycopg
from psycopg.rows import dict_row, tuple_row

from telehealth.broker.dynsec import DeviceLogin, hash_password
from telehealth.errors import StorageError, TelehealthError
from telehealth.security import new_device_secret

#: Expected interval between readings by device kind, used for stale-data detection.
EXPECTED_INTERVAL_S = {"cgm": 300, "glucometer": 6 * 3600, "oximeter": 60, "uploader": 300}


@dataclass(frozen=True)
class DeviceEntry:
    device_id: str
    patient_id: UUID
    kind: str
    revoked: bool
    #: when the device was given to `patient_id` (None: provisioned to them); a reading
    #: received before then is not theirs
    assigned_at: datetime | None = None

    def predates(self, received_at: datetime) -> bool:
        """Whether a reading received then was received before the current assignment."""
        return self.assigned_at is not None and received_at < self.assigned_at


@dataclass(frozen=True)
class Credentials:
    """MQTT credentials, shown once at provisioning; only the hash is stored."""

    device_id: str
    username: str
    password: str
    patient_id: UUID


class DeviceExists(TelehealthError):
    pass


async def provision(
    conn: psycopg.AsyncConnection[Any],
    *,
    device_id: str,
    patient_id: UUID,
    kind: str,
    expected_interval_s: int | None = None,
) -> Credentials:
    secret = new_device_secret()
    try:
        await conn.execute(
            """INSERT INTO devices (id, patient_id, kind, secret_hash, expected_interval_s)
               VALUES (%s, %s, %s, %s, %s)""",
            (
                device_id,
                patient_id,
                kind,
                hash_password(secret),
                expected_interval_s or EXPECTED_INTERVAL_S[kind],
            ),
        )
    except psycopg.errors.UniqueViolation as exc:
        raise DeviceExists(f"device {device_id} is already provisioned") from exc
    return Credentials(device_id=device_id, username=device_id, password=secret, patient_id=patient_id)


class DeviceBelongsToAnother(TelehealthError):
    """A secret was asked for a device on behalf of a patient it is not bound to."""


async def reissue_secret(
    conn: psycopg.AsyncConnection[Any], device_id: str, *, patient_id: UUID | None = None
) -> Credentials:
    """A new MQTT password for a device (the old one stops being valid): for a device whose
    secret was lost, since only its digest is stored. With `patient_id`, refuses a device bound
    to anyone else: moving a device between patients is `reassign`, never a side effect."""
    secret = new_device_secret()
    cur = await conn.execute(
        """UPDATE devices SET secret_hash = %s
           WHERE id = %s AND revoked_at IS NULL AND (%s::uuid IS NULL OR patient_id = %s::uuid)
           RETURNING patient_id""",
        (hash_password(secret), device_id, patient_id, patient_id),
    )
    row = await cur.fetchone()
    if row is None:
        cur = await conn.execute("SELECT patient_id, revoked_at FROM devices WHERE id = %s", (device_id,))
        found = await cur.fetchone()
        owner = None if found is None else (found["patient_id"] if isinstance(found, dict) else found[0])
        if owner is not None and patient_id is not None and owner != patient_id:
            raise DeviceBelongsToAnother(
                f"device {device_id!r} belongs to patient {owner}, not {patient_id}; reassign it explicitly"
            )
        raise LookupError(f"no active device {device_id!r}")
    owner = row["patient_id"] if isinstance(row, dict) else row[0]
    return Credentials(device_id=device_id, username=device_id, password=secret, patient_id=owner)


async def last_heard(
    conn: psycopg.AsyncConnection[Any], part: tuple[int, int] = (0, 1)
) -> list[tuple[UUID, str, int, datetime]]:
    """(patient, device, expected interval in s, last heard) of each active device: its newest
    receipt, or when it was provisioned if never heard. `part` (i, n) takes the i-th of n
    slices of the patients (by their id's last byte), each patient's devices in one slice."""
    i, n = part
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(
            """SELECT d.patient_id, d.id, d.expected_interval_s,
                      GREATEST(d.provisioned_at,
                               (SELECT r.received_at FROM reading_receipts r WHERE r.device_id = d.id
                                ORDER BY r.seq DESC LIMIT 1)) AS last_at
               FROM devices d
               WHERE d.revoked_at IS NULL AND get_byte(uuid_send(d.patient_id), 15) %% %s = %s""",
            (n, i),
        )
        return [(r[0], r[1], r[2], r[3]) for r in await cur.fetchall()]


async def apply_states(
    conn: psycopg.AsyncConnection[Any], states: list[tuple[str, datetime, int | None, str]]
) -> None:
    """(state, at, battery, device id) reports; an older report never overwrites a newer one."""
    if not states:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            """UPDATE devices SET state = %s, state_at = %s,
                                  battery_pct = COALESCE(%s, battery_pct)
               WHERE id = %s AND (state_at IS NULL OR state_at <= %s)""",
            [(state, at, battery, device_id, at) for state, at, battery, device_id in states],
        )


async def owner_of(conn: psycopg.AsyncConnection[Any], device_id: str) -> UUID | None:
    """The patient a device belongs to; None for an unknown device."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute("SELECT patient_id FROM devices WHERE id = %s", (device_id,))
        row = await cur.fetchone()
    return None if row is None else UUID(str(row[0]))


async def revoke(conn: psycopg.AsyncConnection[Any], device_id: str) -> bool:
    """Mark the device revoked; False if there is no such active device."""
    cur = await conn.execute(
        "UPDATE devices SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL RETURNING id",
        (device_id,),
    )
    return await cur.fetchone() is not None


async def reassign(conn: psycopg.AsyncConnection[Any], device_id: str, patient_id: UUID) -> Credentials:
    """Give an active device to another patient with a new secret: whoever held the old one
    (the previous patient's phone, say) can no longer publish as it."""
    secret = new_device_secret()
    cur = await conn.execute(
        """UPDATE devices SET patient_id = %s, secret_hash = %s, state = NULL, state_at = NULL
           WHERE id = %s AND revoked_at IS NULL RETURNING id""",
        (patient_id, hash_password(secret), device_id),
    )
    if await cur.fetchone() is None:
        raise LookupError(f"no active device {device_id!r}")
    return Credentials(device_id=device_id, username=device_id, password=secret, patient_id=patient_id)


async def broker_logins(conn: psycopg.AsyncConnection[Any]) -> list[DeviceLogin]:
    """Every device as the broker must know it: revoked ones stay, disabled. Nightscout
    uploaders post over HTTP and get no broker login."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(
            "SELECT id, secret_hash, revoked_at FROM devices WHERE kind <> 'uploader' ORDER BY id"
        )
        rows = await cur.fetchall()
    return [DeviceLogin(r[0], r[1], r[2] is not None) for r in rows]


async def load_registry(
    conn: psycopg.AsyncConnection[Any],
    device_id: str | None = None,
    *,
    changed_since: datetime | None = None,
    after_seq: int | None = None,
) -> dict[str, DeviceEntry]:
    """All devices, just one, or those whose entry changed after `changed_since` (a time) or
    after `after_seq` (a value of the device clock)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """SELECT id, patient_id, kind, revoked_at, assigned_at FROM devices
               WHERE (%(id)s::text IS NULL OR id = %(id)s)
                 AND (%(since)s::timestamptz IS NULL OR changed_at > %(since)s)
                 AND (%(seq)s::bigint IS NULL OR change_seq > %(seq)s)""",
            {"id": device_id, "since": changed_since, "seq": after_seq},
        )
        rows = await cur.fetchall()
    return {
        r["id"]: DeviceEntry(
            r["id"], r["patient_id"], r["kind"], r["revoked_at"] is not None, r["assigned_at"]
        )
        for r in rows
    }


async def registry_version(conn: psycopg.AsyncConnection[Any]) -> int:
    """The device clock: bumped, in commit order, by every change the caches must see."""
    cur = await conn.execute("SELECT seq FROM device_clock")
    row = await cur.fetchone()
    assert row is not None
    return int(row["seq"] if isinstance(row, dict) else row[0])


async def _database_now(conn: psycopg.AsyncConnection[Any]) -> datetime:
    cur = await conn.execute("SELECT clock_timestamp()")
    row = await cur.fetchone()
    assert row is not None
    return cast(datetime, row[0])


class RegistryUnavailable(StorageError):
    """The database is away and the device is not cached: hold the message, do not judge it."""


class CachedRegistry:
    """The device table held in memory.

    Every `ttl_s` (revocations take effect within it) the rows changed since the last refresh
    are read, with `overlap_s` of margin for changes whose transaction committed late; the
    whole table is reloaded every `full_every_s`, which bounds anything the margin missed. An
    unknown id is looked up on its own, and a miss is remembered for `negative_ttl_s` so a
    flood from unknown ids costs one query per id and interval, not one per message.

    That is enough for the gateway, whose verdicts the processor checks again. The processor
    calls `current` before attributing anything: it reads the device clock and loads every
    device changed since it last did, so no change committed before the call is missed.
    """

    def __init__(
        self,
        url: str,
        ttl_s: float = 2.0,
        negative_ttl_s: float = 0.5,
        *,
        full_every_s: float = 60.0,
        overlap_s: float = 30.0,
    ) -> None:
        self._url = url
        self._ttl = ttl_s
        self._negative_ttl = negative_ttl_s
        self._full_every = full_every_s
        self._overlap = timedelta(seconds=overlap_s)
        self._entries: dict[str, DeviceEntry] = {}
        self._missing: dict[str, float] = {}
        self._loaded_at = float("-inf")
        self._full_at = float("-inf")
        self._since: datetime | None = None  # the database's clock at the last refresh
        self._version = -1  # the device clock value `current` last brought the cache up to
        # one reload at a time: an older answer applied after a newer one would undo a change
        self._reloading = asyncio.Lock()
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        return self._conn

    async def _refresh(self, now: float) -> None:
        conn = await self._connection()
        started = await _database_now(conn)
        if self._since is None or now - self._full_at > self._full_every:
            self._entries = await load_registry(conn)
            self._full_at = now
        else:
            self._entries.update(await load_registry(conn, changed_since=self._since - self._overlap))
        self._since = started
        self._missing.clear()
        self._loaded_at = now

    async def get(self, device_id: str) -> DeviceEntry | None:
        now = time.monotonic()
        try:
            if now - self._loaded_at > self._ttl:
                async with self._reloading:
                    await self._refresh(now)
            elif (
                device_id not in self._entries
                and now - self._missing.get(device_id, -1e9) > self._negative_ttl
            ):
                async with self._reloading:
                    found = await load_registry(await self._connection(), device_id)
                    self._entries.update(found)
                if not found:
                    self._missing[device_id] = now
        except psycopg.OperationalError as exc:
            if self._conn is not None:
                await self._conn.close()
            self._loaded_at = now - self._ttl + 1.0  # retry the reload in a second
            if device_id in self._entries:
                return self._entries[device_id]  # serve from cache through an outage
            raise RegistryUnavailable(f"device registry unavailable: {exc}") from exc
        return self._entries.get(device_id)

    async def current(self) -> None:
        """Bring the cache up to the registry as committed now, in commit order: the device
        clock first, then every device changed since the last call (all of them the first
        time). A change committed before this call is always seen; one committed during it
        may be. Raises `RegistryUnavailable` if the database cannot say: nothing may be
        attributed on a registry that might be stale."""
        try:
            async with self._reloading:
                await self._current()
        except psycopg.OperationalError as exc:
            if self._conn is not None:
                await self._conn.close()
            raise RegistryUnavailable(f"device registry unavailable: {exc}") from exc

    async def _current(self) -> None:
        conn = await self._connection()
        version = await registry_version(conn)
        if self._version < 0:
            self._entries = await load_registry(conn)
        elif version != self._version:
            self._entries.update(await load_registry(conn, after_seq=self._version))
            self._missing.clear()
        self._version = version

    def peek(self, device_id: str) -> DeviceEntry | None:
        return self._entries.get(device_id)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
