"""How `migrate` picks its path and judges applied files: pure decisions, no server."""

import pytest

from telehealth.storage.migrate import (
    SUPERSEDED,
    Migration,
    MigrationError,
    available,
    choose_path,
    preloaded,
    verify_applied,
)


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("", False),
        ("pg_stat_statements", False),
        ("timescaledb", True),
        ("pg_stat_statements, timescaledb", True),
        ('"timescaledb"', True),
        ("timescaledb-2.17.2", True),
        ("timescaledb_toolkit", False),
    ],
)
def test_preload_is_read_from_the_setting(setting: str, expected: bool) -> None:
    assert preloaded(setting) is expected


def test_installed_but_not_preloaded_falls_back_to_plain_with_a_warning() -> None:
    path = choose_path(available=True, preloaded=False, recorded=None)
    assert not path.timescale and path.degraded and "shared_preload_libraries" in path.why


def test_fresh_database_takes_timescaledb_only_when_loadable() -> None:
    assert choose_path(available=True, preloaded=True, recorded=None).timescale
    plain = choose_path(available=False, preloaded=False, recorded=None)
    assert not plain.timescale and not plain.degraded


def test_a_database_keeps_the_path_it_was_first_migrated_on() -> None:
    assert not choose_path(available=True, preloaded=True, recorded=False).timescale
    assert choose_path(available=True, preloaded=True, recorded=True).timescale
    with pytest.raises(MigrationError, match="shared_preload_libraries"):
        choose_path(available=True, preloaded=False, recorded=True)


@pytest.mark.parametrize("licence", [None, "", "timescale"])
def test_the_timescale_licence_or_the_default_allows_the_timescaledb_path(licence: str | None) -> None:
    assert choose_path(available=True, preloaded=True, recorded=None, licence=licence).timescale


def test_the_apache_licence_takes_the_plain_path_with_a_warning() -> None:
    path = choose_path(available=True, preloaded=True, recorded=None, licence="apache")
    assert not path.timescale and path.degraded and "apache" in path.why
    # a database migrated with TimescaleDB cannot go on without compression and policies
    with pytest.raises(MigrationError, match=r"timescaledb\.license"):
        choose_path(available=True, preloaded=True, recorded=True, licence="apache")
    assert not choose_path(available=True, preloaded=True, recorded=False, licence="apache").timescale


M = Migration(3, "three", "CREATE TABLE t ();", "SELECT create_hypertable('t', 'at');")


def test_checksum_covers_the_sql_of_the_path_taken() -> None:
    assert M.checksum(True) != M.checksum(False)
    assert Migration(3, "three", M.sql, None).checksum(True) == M.checksum(False)


def test_changed_files_are_refused_and_unrecorded_ones_adopted() -> None:
    assert verify_applied([M], {3: ("three", False, M.checksum(False))}) == []
    assert verify_applied([M], {3: ("three", True, None)}) == [(3, M.checksum(True))]
    with pytest.raises(MigrationError, match="0003_three"):
        verify_applied([M], {3: ("three", True, M.checksum(False))})
    # a version this code does not ship (a newer release migrated the database) is not an edit
    assert verify_applied([M], {9: ("nine", False, "abc")}) == []


def test_a_comment_only_correction_is_adopted_not_refused() -> None:
    """0005's TimescaleDB part had a wrong comment; databases that applied it are up to date."""
    [five] = [m for m in available() if m.version == 5]
    [earlier] = SUPERSEDED[(5, True)]
    assert verify_applied([five], {5: (five.name, True, earlier)}) == [(5, five.checksum(True))]
    with pytest.raises(MigrationError, match="0005_consent_research"):
        verify_applied([five], {5: (five.name, False, earlier)})
