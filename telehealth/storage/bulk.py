"""Binary COPY of rows whose column types are declared up front.

The processor writes several rows per reading. psycopg's text COPY looks up a dumper for
every value and formats text (a fifth of the processor's CPU under load); with the types
set once and PostgreSQL's binary format, the C dumpers do the work. A column's declared
type must be the table's: binary COPY does not cast, so a mismatch is an error at the first
row, never a silent conversion.

`text[]` and `jsonb` have no C dumpers: psycopg builds each value in Python (3-4 µs, more than
the rest of a row together). Here their values come from small sets (quality flags, consent
purposes, mostly empty contexts), so `remember_small_values` makes a connection dump each
distinct one once and reuse its bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import pq
from psycopg.abc import AdaptContext, Buffer
from psycopg.adapt import Dumper


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


TEXT_ARRAY_OID = 1009
JSONB_OID = 3802
#: distinct values remembered per column type and connection, at most
REMEMBERED_MAX = 256


class _Remembering(Dumper):
    """psycopg's own binary dumper for `oid`, with the bytes of each distinct value kept."""

    format = pq.Format.BINARY
    inner: type[Dumper]
    #: the value's identity for reuse; None: dump it afresh every time
    key: Callable[[Any], Hashable | None]

    def __init__(self, cls: type, context: AdaptContext | None = None) -> None:
        super().__init__(cls, context)
        self._inner = self.inner(cls, context)
        self._known: dict[Hashable, bytes] = {}

    def dump(self, obj: Any) -> Buffer | None:
        key = type(self).key(obj)
        if key is None:
            return self._inner.dump(obj)
        known = self._known.get(key)
        if known is None:
            dumped = self._inner.dump(obj)
            if dumped is None:  # NULL: nothing to remember
                return None
            known = bytes(dumped)
            if len(self._known) < REMEMBERED_MAX:
                self._known[key] = known
        return known


def _text_list(obj: Any) -> Hashable | None:
    if isinstance(obj, list) and all(type(item) is str for item in obj):
        return tuple(obj)
    return None


def _empty_object(obj: Any) -> Hashable | None:
    return () if isinstance(obj, dict) and not obj else None


def remember_small_values(conn: psycopg.AsyncConnection[Any]) -> None:
    """On `conn`, COPY columns declared `text[]` or `jsonb` dump each list of strings, and the
    empty object, once (other values as before)."""
    for oid, key in ((TEXT_ARRAY_OID, _text_list), (JSONB_OID, _empty_object)):
        inner = conn.adapters.get_dumper_by_oid(oid, pq.Format.BINARY)
        assert issubclass(inner, Dumper)
        name = f"Remembering{inner.__name__}"
        conn.adapters.register_dumper(
            None, type(name, (_Remembering,), {"oid": oid, "inner": inner, "key": staticmethod(key)})
        )
