-- Attribution follows the registry at once. One counter bumped by every change to what the
-- device caches hold (a new device; a device's owner, kind or revocation), in the changing
-- transaction, like the consent clock: its row lock orders commits, so a reader that has seen
-- value N has seen every change <= N. The processor reads it before each batch and loads the
-- devices changed since (`devices.change_seq`): every change committed before the gateway
-- accepted a reading is known before that reading is attributed.
CREATE TABLE device_clock (
    id   boolean PRIMARY KEY DEFAULT TRUE CHECK (id),
    seq  bigint NOT NULL
);
INSERT INTO device_clock (id, seq) VALUES (TRUE, 0);

ALTER TABLE devices ADD COLUMN change_seq bigint NOT NULL DEFAULT 0;
CREATE INDEX devices_change_seq ON devices (change_seq);
-- When the device was given to its current patient (NULL: since it was provisioned). A
-- reading received before then belongs to an earlier owner: the processor dead-letters it
-- rather than give it to the current one.
ALTER TABLE devices ADD COLUMN assigned_at timestamptz;

CREATE FUNCTION devices_tick() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE device_clock SET seq = seq + 1 RETURNING seq INTO NEW.change_seq;
    IF TG_OP = 'UPDATE' AND OLD.patient_id IS DISTINCT FROM NEW.patient_id THEN
        NEW.assigned_at := clock_timestamp();
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER devices_tick_insert
    BEFORE INSERT ON devices
    FOR EACH ROW EXECUTE FUNCTION devices_tick();

CREATE TRIGGER devices_tick_update
    BEFORE UPDATE ON devices
    FOR EACH ROW
    WHEN (OLD.patient_id IS DISTINCT FROM NEW.patient_id
          OR OLD.kind IS DISTINCT FROM NEW.kind
          OR OLD.revoked_at IS DISTINCT FROM NEW.revoked_at)
    EXECUTE FUNCTION devices_tick();
