-- Applied after 0001_core.sql only when the timescaledb extension is available.
CREATE EXTENSION IF NOT EXISTS timescaledb;
SELECT create_hypertable('readings', by_range('measured_at', INTERVAL '1 day'),
                         if_not_exists => TRUE, migrate_data => TRUE);
ALTER TABLE readings SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'patient_id, code',
    timescaledb.compress_orderby = 'measured_at DESC'
);
SELECT add_compression_policy('readings', INTERVAL '7 days', if_not_exists => TRUE);
