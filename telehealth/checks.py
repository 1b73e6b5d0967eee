"""What the gateway, and the API for Nightscout uploads, decide about device data.

Knows nothing of MQTT, Kafka or HTTP."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import ValidationError

from telehealth.contracts import (
    DeadLetter,
    DeviceStatus,
    Reading,
    Reason,
    StatusEvent,
    describe,
    parse_payload,
)
from telehealth.storage.devices import DeviceEntry
from telehealth.topics import device_of

Lookup = Callable[[str], DeviceEntry | None]


@dataclass
class Verdict:
    """What to forward and what to dead-letter; the accepted readings arrived at `received_at`
    (`contracts.accepted_json` makes their Kafka values, `contracts.accept` the model)."""

    received_at: datetime
    accepted: list[Reading] = field(default_factory=list)
    rejected: list[DeadLetter] = field(default_factory=list)


def _reject(
    topic: str, now: datetime, reason: Reason, detail: str, raw: bytes, device_id: str | None
) -> DeadLetter:
    return DeadLetter.capture(
        reason, detail, source_topic=topic, device_id=device_id, received_at=now, raw=raw
    )


def device_problem(device_id: str | None, lookup: Lookup) -> tuple[Reason, str] | None:
    if device_id is None:
        return Reason.BAD_TOPIC, "topic is not telehealth/v1/devices/{device_id}/..."
    entry = lookup(device_id)
    if entry is None:
        return Reason.UNKNOWN_DEVICE, f"device {device_id!r} is not provisioned"
    if entry.revoked:
        return Reason.REVOKED_DEVICE, f"device {device_id!r} has been revoked"
    return None


def check_readings(topic: str, payload: bytes, now: datetime, lookup: Lookup) -> Verdict:
    """Accept the readings a provisioned device sent under its own id; reject the rest with why."""
    verdict = Verdict(now)
    topic_device = device_of(topic)
    problem = device_problem(topic_device, lookup)
    if problem is not None:
        verdict.rejected.append(_reject(topic, now, *problem, payload, topic_device))
        return verdict
    readings, rejections = parse_payload(payload, now)
    for rejection in rejections:
        verdict.rejected.append(
            _reject(topic, now, rejection.reason, rejection.detail, rejection.raw, topic_device)
        )
    for reading in readings:
        if reading.device_id != topic_device:
            raw = reading.model_dump_json().encode()
            detail = f"payload device_id {reading.device_id!r} published under {topic_device!r}"
            verdict.rejected.append(_reject(topic, now, Reason.DEVICE_MISMATCH, detail, raw, topic_device))
            continue
        verdict.accepted.append(reading)
    return verdict


def check_status(topic: str, payload: bytes, now: datetime, lookup: Lookup) -> StatusEvent | DeadLetter:
    topic_device = device_of(topic)
    problem = device_problem(topic_device, lookup)
    if problem is not None:
        return _reject(topic, now, *problem, payload, topic_device)
    try:
        status = DeviceStatus.model_validate_json(payload)
    except ValidationError as exc:
        reason, detail = describe(exc)
        return _reject(topic, now, reason, f"status: {detail}", payload, topic_device)
    assert topic_device is not None
    return StatusEvent(**status.model_dump(), device_id=topic_device, received_at=now)
