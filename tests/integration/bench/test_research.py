"""The bench's research phase end to end, at a small scale, in a database of its own."""

import re

from bench.research import measure
from telehealth.storage import migrate


async def test_the_research_phase_releases_every_cell_and_repeats_them_frozen(scratch: str) -> None:
    """A second project over the same days and patients releases every cell too: its cells
    are the same patient sets as the first's, no difference to hide."""
    migrate(scratch)
    report = await measure(scratch, patients=30, days=2)
    assert "consent cache loaded at API start-up: 30 patients" in report
    # 48 closed hours; by sex 15 women and 15 men: every cell has at least 10 patients
    line = r"group_by=(\w+), (fresh|repeat|second project): [\d,]+ ms \((\d+) cells, (\d+) released\)"
    found = re.findall(line, report)
    assert found == [
        ("none", "fresh", "48", "48"),
        ("none", "repeat", "48", "48"),
        ("sex", "fresh", "96", "96"),
        ("sex", "repeat", "96", "96"),
        ("none", "second project", "48", "48"),
        ("sex", "second project", "96", "96"),
    ], report
