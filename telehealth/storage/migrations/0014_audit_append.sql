-- Audit appends in one round trip, under a lock of their own.
--
-- 1. The writer used to take the chain's advisory lock, read the last row and insert the next
--    in two to three round trips of its own, holding the lock across them; under load the
--    API waited on every audited read for that. audit_append() does the same in one
--    statement: lock, read the newest row (a volatile PL/pgSQL function takes a fresh
--    snapshot per statement, so it sees the row the previous holder committed), insert
--    id + 1 with its hash. The canonical content is still built by the caller (Python), in
--    two parts around the id, so the hash covers exactly the bytes `audit.verify` rebuilds:
--    hash = sha256(prev_hash || content_before_id || id as text || content_after_id).
--
-- 2. The chain's lock key was 7301943, which is also the key under which the alert stream
--    assigns positions at commit (0008): an audited read waited for a processor commit that
--    carried alert events, and such a commit for an audit append in flight. Keys in use:
--    7301942 migrations, 7301943 alert stream positions, 7301944 the audit chain,
--    (7301943, project) research releases.
CREATE FUNCTION audit_append(
    p_at timestamptz,
    p_actor_id bigint,
    p_actor text,
    p_role text,
    p_purpose text,
    p_patient_id uuid,
    p_action text,
    p_detail jsonb,
    p_before bytea,
    p_after bytea
) RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    last_id bigint;
    last_hash bytea;
    new_id bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(7301944);
    SELECT id, hash INTO last_id, last_hash FROM audit_log ORDER BY id DESC LIMIT 1;
    new_id := coalesce(last_id, 0) + 1;
    last_hash := coalesce(last_hash, decode(repeat('00', 32), 'hex'));
    INSERT INTO audit_log (id, at, actor_id, actor, role, purpose, patient_id, action, detail,
                           prev_hash, hash)
    VALUES (new_id, p_at, p_actor_id, p_actor, p_role, p_purpose, p_patient_id, p_action, p_detail,
            last_hash, sha256(last_hash || p_before || convert_to(new_id::text, 'UTF8') || p_after));
    RETURN new_id;
END;
$$;
