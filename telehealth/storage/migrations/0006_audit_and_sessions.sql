-- Audit trail (append-only, hash-chained), revocable tokens and login throttling.

-- One row per read or change of patient data. `hash` = SHA-256 over the previous row's hash
-- and this row's canonical content (see telehealth/storage/audit.py); `id` is assigned by the
-- writer as previous id + 1 under an advisory lock, so a missing row leaves a visible gap.
CREATE TABLE audit_log (
    id          bigint PRIMARY KEY,
    at          timestamptz NOT NULL,
    actor_id    bigint,
    actor       text NOT NULL,
    role        text NOT NULL,
    purpose     text NOT NULL,
    patient_id  uuid,
    action      text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}',
    prev_hash   bytea NOT NULL,
    hash        bytea NOT NULL UNIQUE
);
CREATE INDEX audit_log_patient ON audit_log (patient_id, id DESC) WHERE patient_id IS NOT NULL;
-- List reads (the patient table, the alert inbox) name every patient shown in detail.patients.
CREATE INDEX audit_log_patients_shown ON audit_log USING gin ((detail -> 'patients'));

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

-- Tokens: every issued token expires; logout and password changes revoke.
ALTER TABLE api_tokens ADD COLUMN revoked_at timestamptz;
CREATE INDEX api_tokens_user ON api_tokens (user_id) WHERE revoked_at IS NULL;
ALTER TABLE users ADD COLUMN password_changed_at timestamptz;

-- Failed logins per key ('user:<name>' or 'addr:<ip>') within the current window.
CREATE TABLE login_throttle (
    key           text PRIMARY KEY,
    failures      integer NOT NULL,
    window_start  timestamptz NOT NULL,
    locked_until  timestamptz
);

-- Tokens issued before expiry existed get one more day, then every token has an end.
UPDATE api_tokens SET expires_at = now() + interval '1 day' WHERE expires_at IS NULL;
ALTER TABLE api_tokens ALTER COLUMN expires_at SET NOT NULL;
