"""The layering the architecture doc promises, checked on the source: the shared core imports
no service and not the launcher; services do not import each other or the launcher; the bench
sits above the launcher, which never imports it (no package cycle)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.paths import ROOT

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


# SQL lives in telehealth/storage (repositories per table group); routes, the pipeline and the
# gateway call them. Statements are recognised in string constants (docstrings aside).
_SQL = re.compile(
    r"\bSELECT\b[\s\S]*\bFROM\b|^\s*SELECT\b|\bINSERT\s+INTO\b|\bUPDATE\s+\w+\s+SET\b|\bDELETE\s+FROM\b"
    r"|^\s*(LISTEN|NOTIFY|VACUUM|ANALYZE|SHOW|PRAGMA)\b|\b(CREATE|ALTER|DROP)\s+(TEMP\s+)?(TABLE|SYSTEM|INDEX)\b"
    r"|\bCOPY\s+\w+\s*\(",
    re.MULTILINE,
)
PACKAGES = ("telehealth", "gateway", "processor", "dashboard_api", "simulators", "bench", "launcher")
#: modules that may hold SQL outside telehealth/storage, each for a reason of its own
SQL_ALLOWED = {
    # the gateway's own SQLite spool file on its disk, not the shared database
    "gateway/spool.py",
    # configures the embedded server (preload libraries) before any schema exists
    "launcher/embedded.py",
}
#: the bench is a measuring instrument beside the product: its baselines seed and time raw SQL
SQL_ALLOWED_PACKAGES = {"bench"}


def sql_in(path: Path) -> list[str]:
    """The string constants of a module that read as SQL statements (docstrings left out)."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [
        node.value.strip()[:60]
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and _SQL.search(node.value)
    ]


def modules_with_sql() -> dict[str, list[str]]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = str(path.relative_to(ROOT))
            if name.startswith("telehealth/storage/") or (statements := sql_in(path)) == []:
                continue
            found[name] = statements
    return found


def test_sql_lives_in_storage() -> None:
    outside = {
        name: statements
        for name, statements in modules_with_sql().items()
        if name not in SQL_ALLOWED and name.split("/")[0] not in SQL_ALLOWED_PACKAGES
    }
    assert outside == {}


def test_every_exception_still_holds_sql() -> None:
    # An exception whose module no longer holds SQL (or no longer exists) must leave the list.
    assert set(modules_with_sql()) >= SQL_ALLOWED


def test_the_sql_check_sees_statements() -> None:
    # Guard the recogniser itself: statements of each kind are seen, prose and docstrings are not.
    for statement in (
        "SELECT 1",
        "SELECT a FROM b",
        "INSERT INTO t (a) VALUES (%s)",
        "UPDATE devices SET state = %s",
        "DELETE FROM t",
        "LISTEN alert_events",
        "COPY research_cells (project_id, code) FROM STDIN",
    ):
        assert _SQL.search(statement), statement
    for prose in (
        "select a device",
        "the rows come from a SELECT whose columns match",
        "Update the dashboard",
    ):
        assert not _SQL.search(prose), prose
