-- The gateway and the processor cache the device table and refresh it every couple of
-- seconds. Reloading every row each time grows with the fleet (3 million devices would be
-- a full-table read per service every 2 s), so each refresh reads only the rows changed
-- since the last one, found by `changed_at`. It moves whenever what the caches hold moves
-- (owner, kind, revocation), not for status updates (state, battery).
ALTER TABLE devices ADD COLUMN changed_at timestamptz NOT NULL DEFAULT clock_timestamp();
CREATE INDEX devices_changed ON devices (changed_at);

CREATE FUNCTION devices_mark_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.changed_at := clock_timestamp();
    RETURN NEW;
END;
$$;

CREATE TRIGGER devices_changed
    BEFORE UPDATE ON devices
    FOR EACH ROW
    WHEN (OLD.patient_id IS DISTINCT FROM NEW.patient_id
          OR OLD.kind IS DISTINCT FROM NEW.kind
          OR OLD.revoked_at IS DISTINCT FROM NEW.revoked_at)
    EXECUTE FUNCTION devices_mark_changed();
