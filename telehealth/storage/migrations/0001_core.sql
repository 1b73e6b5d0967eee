-- Core schema: people, devices, readings, alerts, dead letters.
-- Works on plain PostgreSQL >= 15; 0001_core.timescale.sql adds TimescaleDB features.

CREATE TABLE patients (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    nhs_number  text NOT NULL UNIQUE,
    name        text NOT NULL,
    birth_date  date NOT NULL,
    sex         text NOT NULL CHECK (sex IN ('female', 'male', 'other', 'unknown')),
    conditions  text[] NOT NULL DEFAULT '{}',
    care_team   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX patients_care_team ON patients (care_team);

CREATE TABLE users (
    id            bigserial PRIMARY KEY,
    username      text NOT NULL UNIQUE,
    password_hash text,
    role          text NOT NULL CHECK (role IN ('admin', 'clinician', 'researcher', 'patient')),
    care_teams    text[] NOT NULL DEFAULT '{}',
    patient_id    uuid REFERENCES patients (id),
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_tokens (
    token_hash  bytea PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz
);

CREATE TABLE devices (
    id                  text PRIMARY KEY,
    patient_id          uuid NOT NULL REFERENCES patients (id),
    kind                text NOT NULL CHECK (kind IN ('cgm', 'glucometer', 'oximeter')),
    secret_hash         text NOT NULL,
    expected_interval_s integer NOT NULL CHECK (expected_interval_s > 0),
    provisioned_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at          timestamptz,
    state               text CHECK (state IN ('online', 'offline')),
    state_at            timestamptz,
    battery_pct         smallint
);
CREATE INDEX devices_patient ON devices (patient_id);

-- One row per reading: the idempotency ledger on (device_id, seq).
CREATE TABLE reading_receipts (
    device_id    text NOT NULL,
    seq          bigint NOT NULL,
    patient_id   uuid NOT NULL,
    measured_at  timestamptz NOT NULL,
    received_at  timestamptz NOT NULL,
    stored_at    timestamptz NOT NULL DEFAULT now(),
    battery_pct  smallint,
    context      jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (device_id, seq)
);

-- One row per observation, canonical units; a hypertable under TimescaleDB.
CREATE TABLE readings (
    patient_id   uuid NOT NULL,
    measured_at  timestamptz NOT NULL,
    code         text NOT NULL,
    value        double precision NOT NULL,
    unit         text NOT NULL,
    loinc        text NOT NULL,
    source       text,
    device_id    text NOT NULL,
    seq          bigint NOT NULL,
    received_at  timestamptz NOT NULL,
    quality      text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX readings_patient_code_time ON readings (patient_id, code, measured_at DESC);
CREATE INDEX readings_device_seq ON readings (device_id, seq);

CREATE TABLE alerts (
    id               bigserial PRIMARY KEY,
    patient_id       uuid NOT NULL REFERENCES patients (id),
    rule             text NOT NULL,
    severity         text NOT NULL CHECK (severity IN ('warning', 'urgent')),
    status           text NOT NULL DEFAULT 'open'
                         CHECK (status IN ('open', 'acknowledged', 'resolved')),
    message          text NOT NULL,
    code             text,
    value            double precision,
    device_id        text,
    seq              bigint,
    triggered_at     timestamptz NOT NULL,
    opened_at        timestamptz NOT NULL DEFAULT now(),
    acknowledged_at  timestamptz,
    acknowledged_by  text,
    resolved_at      timestamptz,
    resolved_by      text,
    published_at     timestamptz
);
-- One open alert per patient and rule, enforced where two processors meet.
CREATE UNIQUE INDEX alerts_one_open ON alerts (patient_id, rule) WHERE status <> 'resolved';
CREATE INDEX alerts_unpublished ON alerts (id) WHERE published_at IS NULL;
CREATE INDEX alerts_status ON alerts (status, opened_at DESC);

CREATE TABLE alert_events (
    id        bigserial PRIMARY KEY,
    alert_id  bigint NOT NULL REFERENCES alerts (id),
    at        timestamptz NOT NULL DEFAULT now(),
    status    text NOT NULL,
    severity  text,
    actor     text NOT NULL,
    note      text
);
CREATE INDEX alert_events_alert ON alert_events (alert_id, at);

CREATE TABLE dead_letters (
    id              bigserial PRIMARY KEY,
    reason          text NOT NULL,
    detail          text NOT NULL,
    source_topic    text NOT NULL,
    device_id       text,
    received_at     timestamptz NOT NULL,
    raw             bytea NOT NULL,
    stored_at       timestamptz NOT NULL DEFAULT now(),
    -- where the letter came from, so a replayed batch does not record it twice
    origin          text NOT NULL UNIQUE
);
CREATE INDEX dead_letters_device ON dead_letters (device_id, received_at DESC);
