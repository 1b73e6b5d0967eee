"""The repository stands alone: no pointers to documents a user of it does not have.

The contract the project keeps is `docs/contract.md`; references elsewhere go there."""

import os
import re
from pathlib import Path

from tests.paths import ROOT

SKIP_DIRS = {".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".telehealth"}
# Built from parts so that this file does not match itself.
FORBIDDEN = re.compile(
    "|".join(
        (
            r"\b" + "SP" + "EC" + r"\b",
            re.escape("../" + "shared"),
            "INFRA" + "-NOTES",
            "infrastructure" + " notes",
        )
    )
)


def _files() -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        found += [Path(folder) / f for f in files]
    return found


def test_nothing_refers_to_documents_outside_the_repository() -> None:
    offending = []
    for path in _files():
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):  # images, sockets, broken links
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            if FORBIDDEN.search(line):
                offending.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offending, "refer to docs/contract.md instead:\n" + "\n".join(offending)


def test_the_contract_is_in_the_repository() -> None:
    contract = (ROOT / "docs" / "contract.md").read_text()
    for heading in ("Device protocol", "Alerts", "API", "Quality bars"):
        assert f"## {heading}" in contract
