from typing import Any

import psycopg

from telehealth.storage import migrate
from telehealth.storage.migrate import available


def test_every_migration_pairs_with_its_optional_timescale_variant() -> None:
    migrations = available()
    assert [m.version for m in migrations] == sorted({m.version for m in migrations})
    assert migrations[0].timescale_sql is not None and "create_hypertable" in migrations[0].timescale_sql


async def test_migrate_is_idempotent_and_records_the_path(database_url: str, settings: Any) -> None:
    assert migrate(database_url) == []  # the session fixture already applied everything
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute("SELECT version, timescale FROM schema_migrations ORDER BY version")
        rows = await cur.fetchall()
        assert [r[0] for r in rows] == [m.version for m in available()]
        cur = await conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'")
        has_timescale = (await cur.fetchone())[0] == 1  # type: ignore[index]
        assert all(r[1] == has_timescale for r in rows)
