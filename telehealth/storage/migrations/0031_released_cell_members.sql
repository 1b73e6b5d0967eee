-- Who was in each released cell (every project, every grouping), so a later cell whose
-- patients differ from an earlier one's by 1 to 9 is suppressed rather than released: the
-- difference of the two would describe those few patients. Never released itself.
--
-- research_released_cells: one row per released cell, with its true patient count, found by
-- code and time, then by size (sets that differ by fewer than 10 differ in size by fewer
-- than 10) before any membership is read.
CREATE TABLE research_released_cells (
    release_id    bigint NOT NULL REFERENCES research_releases (id),
    code          text NOT NULL,
    bucket_start  timestamptz NOT NULL,
    bucket_end    timestamptz NOT NULL,
    grp           text NOT NULL,
    patients      integer NOT NULL,
    PRIMARY KEY (release_id, bucket_start, grp)
);
CREATE INDEX research_released_cells_time ON research_released_cells (code, bucket_start, patients);

-- Membership per release, group and UTC day: the day's members and, for each, a bitmap of
-- hours (bit h = the patient is in the released cell of `grp` whose bucket starts at hour h).
-- One row per release, group and day, however many patients.
CREATE TABLE research_released_members (
    release_id  bigint NOT NULL REFERENCES research_releases (id),
    grp         text NOT NULL,
    day         date NOT NULL,
    patients    uuid[] NOT NULL,
    hours       integer[] NOT NULL,
    PRIMARY KEY (release_id, grp, day)
);
