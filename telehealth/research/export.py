"""Released cells as NDJSON, CSV or Parquet (pyarrow), one flat row per cell."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

MEDIA = {"ndjson": "application/x-ndjson", "csv": "text/csv", "parquet": "application/vnd.apache.parquet"}
COLUMNS = ["bucket", "group", "suppressed", "reason", "patients", "readings", "mean"]


def flat(cell: dict[str, Any]) -> dict[str, Any]:
    row = {c: cell.get(c) for c in COLUMNS}
    for name, value in sorted((cell.get("percentiles") or {}).items()):
        row[name] = value
    row["epsilon"] = cell.get("epsilon", 0.0)
    row["release_id"] = cell.get("release_id")
    return row


def encode(cells: list[dict[str, Any]], fmt: str) -> tuple[bytes, str]:
    rows = [flat(c) for c in cells]
    if fmt == "ndjson":
        return b"".join(json.dumps(r).encode() + b"\n" for r in rows), MEDIA[fmt]
    names = list(dict.fromkeys([*COLUMNS, *(k for r in rows for k in r)]))
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=names, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue().encode(), MEDIA[fmt]
    schema = pa.schema(
        [
            ("bucket", pa.timestamp("us", tz="UTC")),
            ("group", pa.string()),
            ("suppressed", pa.bool_()),
            ("reason", pa.string()),
            ("patients", pa.int64()),
            ("readings", pa.int64()),
            *[
                (n, pa.float64())
                for n in names
                if n not in ("bucket", "group", "suppressed", "reason", "patients", "readings", "release_id")
            ],
            ("release_id", pa.int64()),
        ]
    )
    for r in rows:
        r["bucket"] = datetime.fromisoformat(r["bucket"])
    table = pa.Table.from_pylist([{n: r.get(n) for n in schema.names} for r in rows], schema=schema)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue(), MEDIA[fmt]
