-- Nightscout-compatible uploaders: a device kind of its own, with HTTP credentials.
--
-- An uploader (xDrip+, AndroidAPS, Loop, Juggluco, a Share/LibreLinkUp bridge) posts
-- Nightscout entries over HTTP instead of publishing over MQTT; it never gets a broker login.
-- Its API secret and access token carry full entropy, so they are kept as SHA-256 digests
-- (of the SHA-1 hex the clients send, and of the token), unique so a request finds its
-- uploader in one index probe.

ALTER TABLE devices DROP CONSTRAINT devices_kind_check;
ALTER TABLE devices ADD CONSTRAINT devices_kind_check
    CHECK (kind IN ('cgm', 'glucometer', 'oximeter', 'uploader'));

CREATE TABLE uploader_credentials (
    device_id      text PRIMARY KEY REFERENCES devices (id),
    secret_digest  bytea NOT NULL UNIQUE,
    token_digest   bytea NOT NULL UNIQUE,
    issued_at      timestamptz NOT NULL DEFAULT now()
);
