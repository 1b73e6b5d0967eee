-- Under TimescaleDB, 0005 made `research_readings` a hypertable and `research_hourly` a
-- continuous aggregate, and 0013 dropped the trigger that maintains the cell-level rollups
-- (transition tables are not supported on hypertables). That cost twice:
--
-- * rows that arrived late, into hours below the aggregate's watermark, stayed out of
--   `research_hourly` until the next refresh (every 5 minutes), and a release in between
--   froze incomplete cells (real-time aggregation covers only hours above the watermark);
-- * a release read one row per patient-hour instead of a few per cell-hour: 1.65 s against
--   72 ms on plain PostgreSQL for 30 days hourly over 1,000 patients.
--
-- `research_readings` is a consented copy of eligible rows, written once and read only
-- through the rollups; `readings` stays the hypertable (compression, retention). So here it
-- becomes the plain table with the rollup trigger it is on plain PostgreSQL, and every rollup
-- is rebuilt from its rows: one code path for releases, and a row is in them when committed.
-- (docs/decisions/0035-research-rollups-on-plain-tables.md)

DROP MATERIALIZED VIEW research_hourly;  -- and its refresh policy

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

-- The rollup function of 0013, unless a migration applied since redefined it on both paths
-- (that newer definition is kept).
DO $do$
BEGIN
    IF to_regprocedure('research_rollup()') IS NULL THEN
        EXECUTE $fn$
CREATE OR REPLACE FUNCTION research_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
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
    ), bins_sex AS (
        INSERT INTO research_hourly_bins_sex AS b (purpose, code, hour, sex, bin, patients)
        SELECT purpose, code, hour, sex, bin, sum(d) FROM moved
        GROUP BY 1, 2, 3, 4, 5 HAVING sum(d) <> 0 ORDER BY 1, 2, 3, 4, 5
        ON CONFLICT (purpose, code, hour, sex, bin) DO UPDATE SET patients = b.patients + EXCLUDED.patients
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
END $$
$fn$;
    END IF;
END $do$;

TRUNCATE research_hourly_cells, research_hourly_bins, research_hourly_bins_all,
         research_hourly_bins_sex, research_patient_days;

CREATE TABLE research_readings_plain (LIKE research_readings INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
CREATE TRIGGER research_readings_rollup AFTER INSERT ON research_readings_plain
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION research_rollup();
-- one statement: the trigger rebuilds every rollup from all the rows at once
INSERT INTO research_readings_plain SELECT * FROM research_readings ORDER BY measured_at;
DROP TABLE research_readings;
ALTER TABLE research_readings_plain RENAME TO research_readings;
CREATE INDEX research_readings_patient ON research_readings (patient_id, measured_at);
ANALYZE research_readings, research_hourly, research_hourly_cells, research_hourly_bins,
        research_hourly_bins_all, research_hourly_bins_sex, research_patient_days;
