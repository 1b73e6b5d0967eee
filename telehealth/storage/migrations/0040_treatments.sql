-- Nightscout treatments: carbs, insulin (bolus and basal), notes, exercise, site changes, as
-- uploader apps (Loop, Trio, AndroidAPS, xDrip+) post them. What the patient or their loop
-- did, not a measurement: kept per patient beside the readings, never judged by the alert
-- rules. One row per (patient, the client's identifier), so a re-upload is stored once.
-- `document` is the treatment as uploaded (bounded where it entered); the columns are what
-- the clinician's API and the chart read. `is_valid` false: deleted by the app (API v3 keeps
-- deletions so that clients syncing by `srv_modified` see them).

CREATE TABLE treatments (
    id             bigserial PRIMARY KEY,
    patient_id     uuid NOT NULL REFERENCES patients (id),
    device_id      text NOT NULL REFERENCES devices (id),
    identifier     text NOT NULL CHECK (length(identifier) BETWEEN 1 AND 128),
    -- the `_id` served to v1 clients (24 hex), by which Loop and Trio later name it
    public_id      text NOT NULL,
    event_type     text NOT NULL CHECK (length(event_type) BETWEEN 1 AND 64),
    created_at     timestamptz NOT NULL,
    carbs_g        double precision CHECK (carbs_g >= 0),
    insulin_u      double precision CHECK (insulin_u >= 0),
    basal_u_per_h  double precision CHECK (basal_u_per_h >= 0),
    duration_min   double precision CHECK (duration_min >= 0),
    notes          text,
    entered_by     text,
    document       jsonb NOT NULL,
    srv_created    timestamptz NOT NULL DEFAULT clock_timestamp(),
    srv_modified   timestamptz NOT NULL DEFAULT clock_timestamp(),
    is_valid       boolean NOT NULL DEFAULT true,
    UNIQUE (patient_id, identifier)
);
CREATE INDEX treatments_public_id ON treatments (patient_id, public_id);
CREATE INDEX treatments_patient_time ON treatments (patient_id, created_at DESC);
CREATE INDEX treatments_patient_modified ON treatments (patient_id, srv_modified);
