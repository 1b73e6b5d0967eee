-- Readings are read per patient and code over a time range; the index that serves those
-- queries leads with (patient_id, code) (0001). An index on measured_at alone, which
-- TimescaleDB's create_hypertable adds unless told not to, is worse than useless: once
-- psycopg prepares a statement, PostgreSQL's generic plan can walk every chunk through it
-- and filter by patient (measured on TimescaleDB with 2.16 M rows: 30-day hourly buckets
-- 178 ms with it, 17 ms without). Drop any such single-column, non-unique index, on either
-- path; on a plain database there is none and this does nothing.
DO $$
DECLARE
    idx regclass;
BEGIN
    FOR idx IN
        SELECT i.indexrelid::regclass
        FROM pg_index i
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = 'readings'::regclass
          AND i.indnkeyatts = 1 AND a.attname = 'measured_at' AND NOT i.indisunique
    LOOP
        EXECUTE format('DROP INDEX %s', idx);
    END LOOP;
END
$$;
