-- Applied after 0005_consent_research.sql only when the timescaledb extension is available:
-- eligible research rows become a hypertable and the hourly rollup a continuous aggregate
-- of the same name and columns, so the queries do not change.
-- Transition tables (the trigger that maintains the cell-level rollups) are not supported on
-- hypertables: under TimescaleDB the per-patient rollup is a continuous aggregate and
-- releases take the per-patient path (`research_hourly_cells` stays empty).
DROP TRIGGER research_readings_rollup ON research_readings;
DROP FUNCTION research_rollup();
DROP TABLE research_hourly;

SELECT create_hypertable('research_readings', by_range('measured_at', INTERVAL '1 day'),
                         create_default_indexes => FALSE, if_not_exists => TRUE);

-- WITH NO DATA: creating it WITH DATA cannot run inside the migration's transaction.
-- materialized_only = false: real-time aggregation adds rows only for hours above the
-- watermark; rows that arrive late, into hours already materialised, stay out until the
-- next refresh. 0035 replaces this with the plain path's trigger for that reason.
CREATE MATERIALIZED VIEW research_hourly
    WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT purpose, code, time_bucket(INTERVAL '1 hour', measured_at) AS hour, patient_id,
       count(*) AS n, sum(value) AS total, min(value) AS lo, max(value) AS hi
FROM research_readings
GROUP BY purpose, code, time_bucket(INTERVAL '1 hour', measured_at), patient_id
WITH NO DATA;

SELECT add_continuous_aggregate_policy('research_hourly',
    start_offset => INTERVAL '40 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '5 minutes', if_not_exists => TRUE);
