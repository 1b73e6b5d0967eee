-- Live alert push: a commit-ordered position per alert event, and a notification per commit.
--
-- alert_events.id is taken from its sequence when the row is inserted, but transactions
-- commit in another order: id 11 can be visible while id 10 is still uncommitted. A reader
-- that resumed from "after 11" would miss 10 for good. stream_pos is therefore assigned at
-- COMMIT, by a deferred trigger, under a transaction-scoped advisory lock held until the
-- commit is visible: once a position is visible, every smaller one is visible or will
-- never exist (rolled back). A stream reader can resume from "stream_pos > N" and miss
-- nothing. The lock is held only for the commit itself, after every row lock the
-- transaction takes, so it cannot deadlock with row locks.

ALTER TABLE alert_events ADD COLUMN stream_pos bigint;

CREATE SEQUENCE alert_events_stream_pos;

-- Existing events keep their id order.
UPDATE alert_events e SET stream_pos = o.pos
FROM (SELECT id, row_number() OVER (ORDER BY id) AS pos FROM alert_events) o
WHERE o.id = e.id;
SELECT setval('alert_events_stream_pos', coalesce((SELECT max(stream_pos) FROM alert_events), 0) + 1, false);

CREATE UNIQUE INDEX alert_events_stream ON alert_events (stream_pos);

CREATE FUNCTION alert_events_sequence() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- 7301943: this project's key for "assigning alert stream positions" (migrations use 7301942).
    PERFORM pg_advisory_xact_lock(7301943);
    UPDATE alert_events SET stream_pos = nextval('alert_events_stream_pos') WHERE id = NEW.id;
    -- Delivered at commit; identical payloads within one transaction are sent once.
    PERFORM pg_notify('alert_events', '');
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER alert_events_stream_pos
    AFTER INSERT ON alert_events
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION alert_events_sequence();
