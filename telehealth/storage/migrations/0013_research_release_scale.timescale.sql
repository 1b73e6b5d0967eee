-- Under TimescaleDB the cell-level rollups are not maintained (0005): the function that
-- 0013_research_release_scale.sql redefined for the plain path is not used here.
DROP FUNCTION research_rollup();
