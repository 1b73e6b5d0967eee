"""The settings table in the docs is the one generated from the Settings class."""

from launcher.settings_doc import docs_path, documented_table, markdown_table
from telehealth.settings import Settings


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
