-- Stored observations waiting for their consent decision. The transaction that stores a
-- reading adds its observations here; the processor's consent step decides them later, in a
-- transaction of its own, and deletes them in that same transaction. Storage and alerts never
-- touch the consent tables (consent_clock, patient_consents, reading_consent,
-- research_readings and the rollups), so a lock or failure there delays only research, and an
-- observation leaves this table only with a decision (fail closed, nothing dropped).
CREATE TABLE consent_pending (
    device_id    text NOT NULL,
    seq          bigint NOT NULL,
    code         text NOT NULL,
    patient_id   uuid NOT NULL,
    measured_at  timestamptz NOT NULL,
    value        double precision NOT NULL,
    quality      text[] NOT NULL,
    stored_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, seq, code)
);
