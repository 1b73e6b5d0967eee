-- Consent records, per-reading eligibility, research projects, releases and rollups.
-- Plain PostgreSQL >= 15; 0005_consent_research.timescale.sql swaps the rollup table for a
-- continuous aggregate.

-- One global counter bumped by every consent change, in the changing transaction. Its row
-- lock orders commits, so a reader that has seen counter value N has seen every change <= N:
-- the processor's version check cannot miss a change.
CREATE TABLE consent_clock (
    id   boolean PRIMARY KEY DEFAULT TRUE CHECK (id),
    seq  bigint NOT NULL
);
INSERT INTO consent_clock (id, seq) VALUES (TRUE, 0);

CREATE TABLE patient_consents (
    patient_id        uuid NOT NULL REFERENCES patients (id),
    version           integer NOT NULL,
    provisions        jsonb NOT NULL,
    national_opt_out  boolean NOT NULL,
    recorded_by       text NOT NULL,
    recorded_by_role  text NOT NULL CHECK (recorded_by_role IN ('patient', 'admin')),
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    applies_from      timestamptz NOT NULL,
    change_seq        bigint NOT NULL UNIQUE,
    PRIMARY KEY (patient_id, version)
);

-- Every consent change wakes the processors (LISTEN consent_changed) on commit.
CREATE FUNCTION consent_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('consent_changed', NEW.change_seq::text);
    RETURN NULL;
END $$;
CREATE TRIGGER patient_consents_notify AFTER INSERT ON patient_consents
    FOR EACH ROW EXECUTE FUNCTION consent_changed();

-- The decision taken for each stored observation, with the consent version it used
-- (NULL: no record, the deployment default applied).
CREATE TABLE reading_consent (
    device_id        text NOT NULL,
    seq              bigint NOT NULL,
    code             text NOT NULL,
    patient_id       uuid NOT NULL,
    measured_at      timestamptz NOT NULL,
    consent_version  integer,
    eligible         text[] NOT NULL,
    decided_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, seq, code)
);
CREATE INDEX reading_consent_patient ON reading_consent (patient_id, decided_at);

-- Eligible, clean observations per purpose, value clamped to the plausible range.
CREATE TABLE research_readings (
    purpose          text NOT NULL,
    code             text NOT NULL,
    patient_id       uuid NOT NULL,
    measured_at      timestamptz NOT NULL,
    value            double precision NOT NULL,
    consent_version  integer
);
CREATE INDEX research_readings_patient ON research_readings (patient_id, measured_at);

-- Hourly per-patient rollup, maintained as data arrives (a continuous aggregate under
-- TimescaleDB). Aggregates read this, never the raw rows.
CREATE TABLE research_hourly (
    purpose     text NOT NULL,
    code        text NOT NULL,
    hour        timestamptz NOT NULL,
    patient_id  uuid NOT NULL,
    n           bigint NOT NULL,
    total       double precision NOT NULL,
    lo          double precision NOT NULL,
    hi          double precision NOT NULL,
    PRIMARY KEY (purpose, code, hour, patient_id)
);

CREATE INDEX research_hourly_patient ON research_hourly (patient_id, purpose, code, hour);

-- Cell-level hourly rollups over the per-patient one, so an hourly aggregate over thousands
-- of patients reads a few rows per hour instead of one per patient-hour. A patient counts
-- once per hour with their own mean (bounded contribution); `research_hourly_bins` is the
-- histogram of those means at the released precision (percentiles, min, max). Kept exact as
-- a patient's hourly mean changes: the upsert reports whether it inserted (xmax = 0) and the
-- old sums are the new ones minus what this statement added.
CREATE TABLE research_hourly_cells (
    purpose    text NOT NULL,
    code       text NOT NULL,
    hour       timestamptz NOT NULL,
    sex        text NOT NULL,
    age_band   text NOT NULL,
    patients   bigint NOT NULL,
    readings   bigint NOT NULL,
    sum_means  double precision NOT NULL,
    PRIMARY KEY (purpose, code, hour, sex, age_band)
);
CREATE TABLE research_hourly_bins (
    purpose    text NOT NULL,
    code       text NOT NULL,
    hour       timestamptz NOT NULL,
    sex        text NOT NULL,
    age_band   text NOT NULL,
    bin        integer NOT NULL,
    patients   bigint NOT NULL,
    PRIMARY KEY (purpose, code, hour, sex, age_band, bin)
);

-- The same histogram summed over sex and age band (ungrouped releases read far fewer rows).
CREATE TABLE research_hourly_bins_all (
    purpose    text NOT NULL,
    code       text NOT NULL,
    hour       timestamptz NOT NULL,
    bin        integer NOT NULL,
    patients   bigint NOT NULL,
    PRIMARY KEY (purpose, code, hour, bin)
);
-- Which hours of each UTC day a patient has eligible readings in (bit h = hour h): a
-- release finds its contributors from ~30 rows per patient-month, not ~720.
CREATE TABLE research_patient_days (
    purpose     text NOT NULL,
    code        text NOT NULL,
    day         date NOT NULL,
    patient_id  uuid NOT NULL,
    hours       integer NOT NULL,
    PRIMARY KEY (purpose, code, day, patient_id)
);

-- The released precision of each code (glucose 0.1 mmol/L, others 1): bin * step is the
-- value rounded half up, as disclosure control rounds it.
CREATE FUNCTION research_step(code text) RETURNS double precision LANGUAGE sql IMMUTABLE AS
$$ SELECT CASE code WHEN 'glucose' THEN 0.1 ELSE 1.0 END $$;
CREATE FUNCTION research_age_band(birth date, at timestamptz) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN a < 18 THEN '0-17' WHEN a < 40 THEN '18-39' WHEN a < 60 THEN '40-59'
                WHEN a < 80 THEN '60-79' ELSE '80+' END
    FROM (SELECT date_part('year', age(at::date, birth)) AS a) x
$$;

CREATE FUNCTION research_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH agg AS (
        SELECT purpose, code, date_bin('1 hour', measured_at, TIMESTAMPTZ 'epoch') AS hour, patient_id,
               count(*) AS n, sum(value) AS total, min(value) AS lo, max(value) AS hi
        FROM new_rows GROUP BY 1, 2, 3, 4
    ), up AS (
        INSERT INTO research_hourly AS h (purpose, code, hour, patient_id, n, total, lo, hi)
        SELECT * FROM agg ORDER BY 1, 2, 3, 4
        ON CONFLICT (purpose, code, hour, patient_id) DO UPDATE
            SET n = h.n + EXCLUDED.n, total = h.total + EXCLUDED.total,
                lo = least(h.lo, EXCLUDED.lo), hi = greatest(h.hi, EXCLUDED.hi)
        RETURNING h.purpose, h.code, h.hour, h.patient_id, h.n, h.total, (h.xmax = 0) AS inserted
    ), delta AS (
        SELECT up.purpose, up.code, up.hour, p.sex, research_age_band(p.birth_date, up.hour) AS age_band,
               up.inserted, up.total / up.n AS new_mean,
               CASE WHEN up.inserted THEN NULL ELSE (up.total - a.total) / (up.n - a.n) END AS old_mean,
               least(up.n, 60) - CASE WHEN up.inserted THEN 0 ELSE least(up.n - a.n, 60) END AS readings
        FROM up JOIN agg a USING (purpose, code, hour, patient_id) JOIN patients p ON p.id = up.patient_id
    ), days AS (
        INSERT INTO research_patient_days AS d (purpose, code, day, patient_id, hours)
        SELECT purpose, code, (hour AT TIME ZONE 'UTC')::date, patient_id,
               bit_or(1 << extract(hour FROM hour AT TIME ZONE 'UTC')::int)
        FROM agg GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        ON CONFLICT (purpose, code, day, patient_id) DO UPDATE SET hours = d.hours | EXCLUDED.hours
    ), moved AS (
        SELECT purpose, code, hour, sex, age_band,
               floor(new_mean / research_step(code) + 0.5)::int AS bin, 1 AS d FROM delta
        UNION ALL
        SELECT purpose, code, hour, sex, age_band,
               floor(old_mean / research_step(code) + 0.5)::int, -1 FROM delta WHERE NOT inserted
    ), bins_all AS (
        INSERT INTO research_hourly_bins_all AS b (purpose, code, hour, bin, patients)
        SELECT purpose, code, hour, bin, sum(d) FROM moved
        GROUP BY 1, 2, 3, 4 HAVING sum(d) <> 0 ORDER BY 1, 2, 3, 4
        ON CONFLICT (purpose, code, hour, bin) DO UPDATE SET patients = b.patients + EXCLUDED.patients
    ), cells AS (
        INSERT INTO research_hourly_cells AS c (purpose, code, hour, sex, age_band, patients, readings, sum_means)
        SELECT purpose, code, hour, sex, age_band, count(*) FILTER (WHERE inserted), sum(readings),
               sum(new_mean - coalesce(old_mean, 0))
        FROM delta GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
        ON CONFLICT (purpose, code, hour, sex, age_band) DO UPDATE
            SET patients = c.patients + EXCLUDED.patients, readings = c.readings + EXCLUDED.readings,
                sum_means = c.sum_means + EXCLUDED.sum_means
    )
    INSERT INTO research_hourly_bins AS b (purpose, code, hour, sex, age_band, bin, patients)
    SELECT purpose, code, hour, sex, age_band, bin, sum(d) FROM moved
    GROUP BY 1, 2, 3, 4, 5, 6 HAVING sum(d) <> 0 ORDER BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (purpose, code, hour, sex, age_band, bin) DO UPDATE SET patients = b.patients + EXCLUDED.patients;
    RETURN NULL;
END $$;
CREATE TRIGGER research_readings_rollup AFTER INSERT ON research_readings
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION research_rollup();

CREATE TABLE research_projects (
    id                      bigserial PRIMARY KEY,
    slug                    text NOT NULL UNIQUE,
    title                   text NOT NULL,
    owner                   text NOT NULL,
    purpose                 text NOT NULL CHECK (purpose IN ('research', 'planning', 'commercial')),
    codes                   text[] NOT NULL,
    cohort                  jsonb NOT NULL DEFAULT '{}',
    starts_on               date NOT NULL,
    ends_on                 date NOT NULL,
    -- the one bucket size the project may ask for: cells of one size never nest in time
    bucket_hours            integer NOT NULL DEFAULT 1 CHECK (bucket_hours IN (1, 3, 6, 12, 24, 168)),
    epsilon_per_release     double precision,
    epsilon_budget          double precision,
    -- HMAC key of this project's pseudonyms: random per project, never leaves the database
    pseudonym_key           bytea NOT NULL,
    created_by              text NOT NULL,
    created_at              timestamptz NOT NULL DEFAULT now(),
    CHECK (starts_on <= ends_on)
);

-- A researcher's tokens are bound to one project.
ALTER TABLE users ADD COLUMN project_id bigint REFERENCES research_projects (id);

CREATE TABLE research_releases (
    id                bigserial PRIMARY KEY,
    project_id        bigint NOT NULL REFERENCES research_projects (id),
    kind              text NOT NULL CHECK (kind IN ('aggregates', 'stream')),
    code              text NOT NULL,
    bucket_seconds    integer NOT NULL,
    group_by          text NOT NULL,
    period_start      timestamptz NOT NULL,
    period_end        timestamptz NOT NULL,
    cells             integer NOT NULL,
    patients_rounded  integer NOT NULL,
    epsilon           double precision NOT NULL DEFAULT 0,
    released_at       timestamptz NOT NULL DEFAULT now(),
    released_to       text NOT NULL
);
CREATE INDEX research_releases_project ON research_releases (project_id, released_at);

-- Released cells are frozen: asking again returns the same figures, so re-querying after a
-- withdrawal or late data cannot difference one patient out of a cell.
CREATE TABLE research_cells (
    project_id      bigint NOT NULL REFERENCES research_projects (id),
    code            text NOT NULL,
    bucket_seconds  integer NOT NULL,
    group_by        text NOT NULL,
    bucket_start    timestamptz NOT NULL,
    grp             text NOT NULL,
    body            jsonb NOT NULL,
    release_id      bigint NOT NULL REFERENCES research_releases (id),
    PRIMARY KEY (project_id, code, bucket_seconds, group_by, bucket_start, grp)
);

-- Who contributed to a release, as the project-keyed pseudonym (HMAC), with the consent
-- version that permitted it. Patients find their own rows; projects cannot be linked.
CREATE TABLE release_contributors (
    release_id       bigint NOT NULL REFERENCES research_releases (id),
    pseudonym        text NOT NULL,
    consent_version  integer,
    PRIMARY KEY (release_id, pseudonym)
);
CREATE INDEX release_contributors_pseudonym ON release_contributors (pseudonym);

-- Differential privacy: epsilon spent per project, and per patient across projects.
CREATE TABLE epsilon_ledger (
    id          bigserial PRIMARY KEY,
    project_id  bigint NOT NULL REFERENCES research_projects (id),
    release_id  bigint REFERENCES research_releases (id),
    epsilon     double precision NOT NULL CHECK (epsilon > 0),
    spent_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE patient_epsilon (
    patient_id  uuid PRIMARY KEY REFERENCES patients (id),
    spent       double precision NOT NULL DEFAULT 0
);
