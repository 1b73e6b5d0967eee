-- Versioned per-patient alert thresholds; the newest version is in force.
CREATE TABLE patient_thresholds (
    patient_id  uuid NOT NULL REFERENCES patients (id),
    version     integer NOT NULL,
    settings    jsonb NOT NULL,
    changed_by  text NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (patient_id, version)
);
