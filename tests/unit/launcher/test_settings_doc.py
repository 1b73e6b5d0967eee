"""The settings table in the docs is the one generated from the Settings class."""

import re

from launcher.settings_doc import docs_path, documented_table, markdown_table
from telehealth.settings import GROUPS, Settings
from tests.paths import ROOT


def test_docs_table_matches_the_settings_class() -> None:
    documented = documented_table(docs_path().read_text())
    assert documented == markdown_table(), (
        "docs/configuration.md is out of date: regenerate the table with `telehealth settings --markdown`"
    )


def test_every_setting_is_documented() -> None:
    table = markdown_table()
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no description"
        assert f"`TELEHEALTH_{name.upper()}`" in table


def test_every_setting_is_in_exactly_one_group() -> None:
    grouped = [name for group in GROUPS for name in group.__annotations__ if name in Settings.model_fields]
    assert sorted(grouped) == sorted(Settings.model_fields), "add the setting to one group class"
    assert len(grouped) == len(set(grouped))


def test_every_variable_the_code_reads_is_a_documented_setting() -> None:
    """A `TELEHEALTH_*` name in the code is a setting, a test-suite switch or a documented
    variable of the researcher's client (docs/configuration.md)."""
    docs = (ROOT / "docs" / "configuration.md").read_text() + (ROOT / "README.md").read_text()
    found: set[str] = set()
    for package in ("telehealth", "gateway", "processor", "dashboard_api", "launcher", "simulators", "bench"):
        for path in (ROOT / package).rglob("*.py"):
            found |= set(re.findall(r"TELEHEALTH_[A-Z0-9_]*[A-Z0-9]", path.read_text()))
    settings = {f"TELEHEALTH_{name.upper()}" for name in Settings.model_fields}
    undocumented = sorted(name for name in found - settings if f"`{name}`" not in docs)
    assert undocumented == []
