-- Two costs of a research release over 10,000 patients, measured at 30 days hourly:
--
-- 1. Contributors were found by joining every patient-day of the range (0.3-0.8 s); a release
--    now probes each eligible patient's own day rows and stops at the first day with a
--    reading in a released cell (~0.1 s), through this index. `hours` is left out so the
--    rollup's updates of it stay HOT.
CREATE INDEX research_patient_days_patient ON research_patient_days (patient_id, purpose, code, day);

-- 2. A release grouped by sex summed the (sex, age band) histogram over age bands, ten rows
--    into one per bin (0.4-0.6 s); the histogram per sex is kept as its own rollup, as the
--    one summed over everything (`research_hourly_bins_all`) is.
CREATE TABLE research_hourly_bins_sex (
    purpose    text NOT NULL,
    code       text NOT NULL,
    hour       timestamptz NOT NULL,
    sex        text NOT NULL,
    bin        integer NOT NULL,
    patients   bigint NOT NULL,
    PRIMARY KEY (purpose, code, hour, sex, bin)
);
INSERT INTO research_hourly_bins_sex (purpose, code, hour, sex, bin, patients)
SELECT purpose, code, hour, sex, bin, sum(patients) FROM research_hourly_bins
GROUP BY 1, 2, 3, 4, 5 HAVING sum(patients) <> 0;

-- The rollup trigger of 0005, maintaining the new histogram too.
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
END $$;
