"""Whether the store holds what an intake acknowledged: a reading by its (device, seq) receipt
or the processor's own dead letter for it, a dead letter by its id.

The same identities the gateway's spool confirms with; used by the HTTP intake, which answers
an upload only once the store holds it (the embedded Kafka keeps memory only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

_MISSING = """
SELECT
  (SELECT count(*) FROM unnest(%(devices)s::text[], %(seqs)s::bigint[]) AS s(d, q)
   WHERE NOT EXISTS (SELECT 1 FROM reading_receipts r WHERE r.device_id = s.d AND r.seq = s.q)
     AND NOT EXISTS (
       SELECT 1 FROM dead_letters l
       WHERE l.origin IN ('orphan:' || s.d || ':' || s.q, 'revoked:' || s.d || ':' || s.q,
                          'reassigned:' || s.d || ':' || s.q)))
  + (SELECT count(*) FROM unnest(%(letters)s::text[]) AS t(o)
     WHERE NOT EXISTS (SELECT 1 FROM dead_letters l WHERE l.origin = 'letter:' || t.o))
  AS missing
"""


async def missing(
    conn: psycopg.AsyncConnection[Any], readings: Sequence[tuple[str, int]], letters: Sequence[str]
) -> int:
    """How many of these readings and dead letters the store does not hold yet."""
    if not readings and not letters:
        return 0
    params = {
        "devices": [d for d, _ in readings],
        "seqs": [q for _, q in readings],
        "letters": list(letters),
    }
    cur = await conn.execute(_MISSING, params)
    row = await cur.fetchone()
    assert row is not None
    value = row["missing"] if isinstance(row, dict) else row[0]
    return int(value)
