-- Who is in each released cell (every project, every grouping), kept so a later cell whose
-- patients differ from an earlier one's by 1 to 9 is suppressed rather than released: the
-- difference of the two would describe those few patients. Never released itself.
CREATE TABLE research_released_cells (
    id            bigserial PRIMARY KEY,
    code          text NOT NULL,
    bucket_start  timestamptz NOT NULL,
    bucket_end    timestamptz NOT NULL,
    project_id    bigint NOT NULL REFERENCES research_projects (id),
    release_id    bigint NOT NULL REFERENCES research_releases (id),
    grp           text NOT NULL,
    patients      integer NOT NULL,
    members       uuid[] NOT NULL
);
-- Candidates are found by code and time, then by size (a set that differs by fewer than 10
-- patients differs in size by fewer than 10), before any set is compared.
CREATE INDEX research_released_cells_time ON research_released_cells (code, bucket_start, patients);
