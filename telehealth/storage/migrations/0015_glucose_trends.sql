-- The CGM trend each device's newest live reading was judged by (the processor's filtered
-- level and rate), so the dashboard draws the forecast the alarm saw. One row per device, the
-- newest: it is state, not history; never readings, never research data.
CREATE TABLE glucose_trends (
    device_id    text PRIMARY KEY,
    seq          bigint NOT NULL,
    patient_id   uuid NOT NULL REFERENCES patients (id),
    measured_at  timestamptz NOT NULL,
    level        double precision NOT NULL,
    rate_per_min double precision NOT NULL
);
CREATE INDEX glucose_trends_patient ON glucose_trends (patient_id);
