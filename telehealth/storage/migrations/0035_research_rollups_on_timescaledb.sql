-- Research rows and their cell-level rollups are the same on both paths from here on:
-- 0035_research_rollups_on_timescaledb.timescale.sql brings the TimescaleDB path in line.
-- Nothing changes on plain PostgreSQL.
SELECT 1;
