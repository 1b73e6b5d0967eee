-- The patient's own time zone (an IANA name): the days and times of day of the AGP and the
-- daily glucose profiles are the patient's, not those of whoever reads the report. NULL: the
-- deployment's default (setting `patient_time_zone`).
ALTER TABLE patients ADD COLUMN time_zone text
    CHECK (time_zone IS NULL OR time_zone ~ '^[A-Za-z0-9_+\-/]{1,64}$');

-- The glucose unit a user reads and types values in. NULL: the deployment's default
-- (setting `glucose_unit`). Storage stays in mmol/L.
ALTER TABLE users ADD COLUMN glucose_unit text
    CHECK (glucose_unit IS NULL OR glucose_unit IN ('mmol/L', 'mg/dL'));
