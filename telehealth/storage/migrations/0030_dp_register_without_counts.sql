-- A differentially private release shows no patient count in the register: its true count,
-- even rounded to 5, is not noised and would undo the noise of its cells.
ALTER TABLE research_releases ALTER COLUMN patients_rounded DROP NOT NULL;
UPDATE research_releases SET patients_rounded = NULL WHERE epsilon > 0;
