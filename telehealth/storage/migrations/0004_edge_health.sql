-- Bounded dead letters and service heartbeats.

-- A dead letter keeps a bounded prefix of the raw bytes; the whole message's size and
-- SHA-256 are kept beside it. Letters stored before kept their bytes whole.
ALTER TABLE dead_letters ADD COLUMN raw_size integer, ADD COLUMN raw_sha256 text;
UPDATE dead_letters SET raw_size = length(raw), raw_sha256 = encode(sha256(raw), 'hex');
ALTER TABLE dead_letters ALTER COLUMN raw_size SET NOT NULL, ALTER COLUMN raw_sha256 SET NOT NULL;

-- One row per running gateway or processor instance, rewritten every second or so:
-- how much work it holds and when it last moved any. /readyz reads it.
CREATE TABLE service_heartbeats (
    service      text NOT NULL CHECK (service IN ('gateway', 'processor')),
    instance     text NOT NULL,
    beat_at      timestamptz NOT NULL,
    progress_at  timestamptz NOT NULL,
    backlog      integer NOT NULL CHECK (backlog >= 0),
    PRIMARY KEY (service, instance)
);
CREATE INDEX service_heartbeats_beat ON service_heartbeats (beat_at DESC);
