"""What each audit action means, in the words a patient reads in their access log.

Every action code written to the audit trail has a label here (a unit test scans the source
for them); an unknown code still reads as words, never as a raw code.
"""

from __future__ import annotations

LABELS: dict[str, str] = {
    "patients.list": "saw you in the clinician's patient list",
    "patient.register": "registered you",
    "patient.read": "read your record (name, NHS number, birth date)",
    "patient.now.read": "looked at your latest readings",
    "patient.time_zone.update": "changed your time zone",
    "observations.read": "read your readings",
    "glucose_summary.read": "read your glucose summary (time in range)",
    "glucose_days.read": "read your daily glucose profiles",
    "thresholds.read": "read your alert thresholds",
    "thresholds.update": "changed your alert thresholds",
    "alerts.list": "saw your alerts in the alert inbox",
    "alerts.stream.snapshot": "saw your alerts in the live alert inbox",
    "alerts.stream.event": "was shown a change to one of your alerts in the live alert inbox",
    "alerts.stream.values": "saw your latest readings beside your alerts in the live alert inbox",
    "alert.acknowledge": "acknowledged an alert",
    "alert.resolve": "resolved an alert",
    "device.provision": "set up a device for you",
    "device.revoke": "switched off one of your devices",
    "device.reassign": "moved a device to or from your record",
    "consent.record": "recorded your consent choices",
    "consent.read": "read your consent choices",
    "consent.decision": "checked what your consent allows",
    "data_uses.read": "read which research used your data",
    "access_log.read": "read this access log",
    "access.denied": "tried to open your records and was refused",
    "fhir.patient.read": "read your record (name, NHS number, birth date) through a clinical system (FHIR)",
    "fhir.observations.read": "read your readings through a clinical system (FHIR)",
    "fhir.devices.read": "read your devices through a clinical system (FHIR)",
    "fhir.alerts.read": "saw your alerts through a clinical system (FHIR)",
    "fhir.cgm_summary.read": "read your glucose summary (time in range) through a clinical system (FHIR)",
    "fhir.cgm_bundle.read": "fetched your glucose summary and CGM readings for a clinical record (FHIR)",
    "nightscout.entries.read": "read your glucose through a Nightscout app",
    "nightscout.status.read": "checked your Nightscout connection",
    "nightscout.devicestatus.read": "read your devices' status (pump, loop) through a Nightscout app",
    "nightscout.treatments.read": "read your treatments (insulin, carbs, notes) through a Nightscout app",
    "treatments.read": "read your treatments (insulin, carbs, notes)",
    "nightscout.profile.read": "read your therapy profile through a Nightscout app",
    "nightscout.food.read": "read your food list through a Nightscout app",
    "nightscout.settings.read": "read your app settings through a Nightscout app",
    "auth.password_change": "changed their password",
    "auth.revoke_tokens": "signed a user out everywhere",
}


def describe(action: str) -> str:
    """The label of `action`, or its code turned into words (`fhir.observation.read` ->
    'fhir observation read')."""
    return LABELS.get(action) or action.replace(".", " ").replace("_", " ")
