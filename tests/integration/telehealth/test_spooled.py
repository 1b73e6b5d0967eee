"""The keeper's questions (`telehealth.storage.spooled`) name exactly the spooled records the
store holds, for each kind of record, with the odd values a spool may carry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from telehealth.storage import spooled
from tests.factories import make_device, make_patient

BIG = 2**63 - 1


async def _letter(db: psycopg.AsyncConnection[Any], device: str, origin: str) -> None:
    await db.execute(
        "INSERT INTO dead_letters (reason, detail, source_topic, device_id, received_at, raw, origin,"
        " raw_size, raw_sha256) VALUES ('unparseable', '', 'readings', %s, now(), '', %s, 0, '')",
        (device, origin),
    )


async def test_readings_held_are_those_with_a_receipt_or_the_processors_own_letter(
    db: psycopg.AsyncConnection[Any],
) -> None:
    patient = await make_patient(db, "team-spooled")
    device = (await make_device(db, patient, "oximeter")).device_id
    now = datetime.now(UTC)
    for seq in (1, BIG):
        await db.execute(
            "INSERT INTO reading_receipts (device_id, seq, patient_id, measured_at, received_at)"
            " VALUES (%s, %s, %s, %s, %s)",
            (device, seq, patient, now, now),
        )
    for kind, seq in (("orphan", 3), ("revoked", 4), ("reassigned", 5), ("letter", 6)):
        await _letter(db, device, f"{kind}:{device}:{seq}")
    seqs: list[int | None] = [1, 2, 3, 4, 5, 6, BIG, None]
    ids = [(1 << 40) + i for i in range(len(seqs))]  # spool ids are wide
    devices: list[str | None] = [device] * len(seqs)
    held = await spooled.readings_held(db, ids, devices, seqs)
    # 2 was never stored; 6 is a letter of another kind; None names nothing
    assert sorted(held) == [ids[0], ids[2], ids[3], ids[4], ids[6]]
    assert await spooled.readings_held(db, [], [], []) == []
    assert await spooled.missing(db, [(device, 1), (device, 2), ('o"dd\\id', 1)], []) == 2


async def test_letters_and_statuses_held(db: psycopg.AsyncConnection[Any]) -> None:
    patient = await make_patient(db, "team-spooled")
    device = (await make_device(db, patient, "oximeter")).device_id
    state_at = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    await db.execute("UPDATE devices SET state_at = %s WHERE id = %s", (state_at, device))
    ref = f'{device}:ünï"code'
    await _letter(db, device, f"letter:{ref}")
    assert await spooled.letters_held(db, [7, 8, 9], [ref, f"{device}:other", None]) == [7]
    assert await spooled.missing(db, [], [ref, "absent"]) == 1

    deltas = (-timedelta(microseconds=1), timedelta(0), timedelta(seconds=1))
    older, same, newer = ((state_at + delta).isoformat() for delta in deltas)
    held = await spooled.statuses_held(
        db, [1, 2, 3, 4], [device, device, device, "no-such-device"], [older, same, newer, newer]
    )
    # a status is held once the device's state is as new or newer, or the device is gone
    assert sorted(held) == [1, 2, 4]
