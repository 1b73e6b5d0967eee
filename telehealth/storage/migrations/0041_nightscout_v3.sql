-- Nightscout API v3, as AndroidAPS's NSClientV3 uses it.
--
-- An uploader exchanges its access token for a session token at
-- /api/v2/authorization/request/<token> (Nightscout's JWT step); only the SHA-256 of the
-- session token is kept, with its expiry. A new secret for the uploader (reissue, reassign)
-- ends its sessions; a revoked uploader's sessions are refused with it.
CREATE TABLE uploader_sessions (
    digest      bytea PRIMARY KEY,
    device_id   text NOT NULL REFERENCES devices (id),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX uploader_sessions_device ON uploader_sessions (device_id);

-- The collections AndroidAPS syncs that are no reading and no treatment: devicestatus (pump,
-- loop and uploader state), profile, food and settings, kept per patient as uploaded, by the
-- client's identifier, so that the app finds what it stored. Never read by the alert rules.
CREATE TABLE nightscout_documents (
    id            bigserial PRIMARY KEY,
    patient_id    uuid NOT NULL REFERENCES patients (id),
    device_id     text NOT NULL REFERENCES devices (id),
    collection    text NOT NULL CHECK (collection IN ('devicestatus', 'profile', 'food', 'settings')),
    identifier    text NOT NULL CHECK (length(identifier) BETWEEN 1 AND 128),
    date          timestamptz NOT NULL,
    document      jsonb NOT NULL,
    srv_created   timestamptz NOT NULL DEFAULT clock_timestamp(),
    srv_modified  timestamptz NOT NULL DEFAULT clock_timestamp(),
    is_valid      boolean NOT NULL DEFAULT true,
    UNIQUE (patient_id, collection, identifier)
);
CREATE INDEX nightscout_documents_date ON nightscout_documents (patient_id, collection, date DESC);
CREATE INDEX nightscout_documents_modified ON nightscout_documents (patient_id, collection, srv_modified);

-- API v3's history of entries: what was stored after a time, per patient.
CREATE INDEX reading_receipts_patient_stored ON reading_receipts (patient_id, stored_at);
