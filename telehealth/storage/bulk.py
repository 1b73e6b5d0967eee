"""Binary COPY of rows whose column types are declared up front.

The processor writes several rows per reading. psycopg's text COPY looks up a dumper for
every value and formats text (a fifth of the processor's CPU under load); with the types
set once and PostgreSQL's binary format, the C dumpers do the work. A column's declared
type must be the table's: binary COPY does not cast, so a mismatch is an error at the first
row, never a silent conversion.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg


@dataclass(frozen=True)
class Columns:
    """A table's columns for COPY, each with its PostgreSQL type (`("seq", "int8")`)."""

    table: str
    columns: tuple[tuple[str, str], ...]

    @property
    def names(self) -> str:
        return ", ".join(name for name, _ in self.columns)

    @property
    def statement(self) -> str:
        return f"COPY {self.table} ({self.names}) FROM STDIN (FORMAT BINARY)"

    @property
    def types(self) -> list[str]:
        return [kind for _, kind in self.columns]


async def copy_in(cur: psycopg.AsyncCursor[Any], target: Columns, rows: Iterable[Sequence[Any]]) -> None:
    """COPY `rows` (tuples in `target`'s column order) into `target` on `cur`'s connection."""
    async with cur.copy(target.statement) as copy:
        copy.set_types(target.types)
        for row in rows:
            await copy.write_row(row)
