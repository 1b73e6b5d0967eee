"""The layering the architecture doc promises, checked on the source: the shared core imports
no service and not the launcher; services do not import each other or the launcher; the bench
sits above the launcher, which never imports it (no package cycle)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"gateway", "processor", "dashboard_api", "simulators"}
ABOVE = {"launcher", "bench"}


def imported_packages(package: str) -> dict[str, set[str]]:
    """Top-level packages each module of `package` imports (anywhere in the file)."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def test_the_core_imports_nothing_above_it() -> None:
    offenders = {m: names & (SERVICES | ABOVE) for m, names in imported_packages("telehealth").items()}
    assert {m: n for m, n in offenders.items() if n} == {}


@pytest.mark.parametrize("service", sorted(SERVICES - {"simulators"}))
def test_a_service_imports_no_other_service_nor_the_launcher(service: str) -> None:
    # The simulators are the test and demo driver; services never import them.
    others = (SERVICES | ABOVE) - {service}
    offenders = {m: names & others for m, names in imported_packages(service).items()}
    assert {m: n for m, n in offenders.items() if n} == {}


def test_the_launcher_never_imports_the_bench() -> None:
    # The bench starts the launcher's stack; `telehealth bench` runs `python -m bench` instead.
    offenders = {m: names & {"bench"} for m, names in imported_packages("launcher").items()}
    assert {m: n for m, n in offenders.items() if n} == {}
