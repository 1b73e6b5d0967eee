"""`telehealth research pull`: a researcher's incremental download of released buckets.

Pulls `GET /api/v1/research/stream` from the saved cursor until it stops advancing, writes
each pull that carried cells as one file (NDJSON, CSV or Parquet) into the output folder,
and saves the cursor after each file, so an interrupted pull resumes where it stopped and
pandas or polars can read the folder as one data set.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

EXTENSIONS = {"ndjson": "ndjson", "csv": "csv", "parquet": "parquet"}


class PullError(Exception):
    pass


def _get(api: str, path: str, token: str, params: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    url = f"{api.rstrip('/')}{path}?{urllib.parse.urlencode(params)}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise PullError(f"{exc.code} from {path}: {detail}") from exc


def pull(api: str, token: str, project: str, code: str, fmt: str, out: Path) -> list[Path]:
    """Every closed bucket not yet pulled; returns the files written."""
    body, _ = _get(api, "/api/v1/research/project", token, {})
    bound = json.loads(body)["slug"]
    if bound != project:
        raise PullError(f"this token is bound to project {bound!r}, not {project!r}")
    out.mkdir(parents=True, exist_ok=True)
    state = out / f".cursor-{project}-{code}"
    cursor = state.read_text().strip() if state.exists() else None
    written = []
    while True:
        params = {"code": code, "format": fmt} | ({"cursor": cursor} if cursor else {})
        body, headers = _get(api, "/api/v1/research/stream", token, params)
        headers = {k.lower(): v for k, v in headers.items()}
        following = headers.get("x-next-cursor")
        if not following:
            raise PullError("the server sent no X-Next-Cursor")
        if int(headers.get("x-cells", "0")):
            stamp = following.replace(":", "").replace("+0000", "Z").replace("+00", "Z")
            path = out / f"{project}-{code}-until-{stamp}.{EXTENSIONS[fmt]}"
            path.write_bytes(body)
            written.append(path)
        if following == cursor:
            return written
        cursor = following
        state.write_text(cursor)  # after the file: a crash re-pulls (frozen cells), never skips


def main(args: argparse.Namespace) -> None:
    token = args.token or os.environ.get("TELEHEALTH_RESEARCH_TOKEN")
    if not token:
        raise SystemExit("telehealth: give --token or set TELEHEALTH_RESEARCH_TOKEN")
    try:
        files = pull(args.api, token, args.project, args.code, args.format, args.out)
    except (PullError, urllib.error.URLError) as exc:
        raise SystemExit(f"telehealth: {exc}") from exc
    print(f"{len(files)} file(s) written to {args.out}" + "".join(f"\n  {f.name}" for f in files))


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    research = sub.add_parser("research", help="researcher tools").add_subparsers(
        dest="research_command", required=True
    )
    p = research.add_parser("pull", help="download released buckets since the last pull")
    p.add_argument("--project", required=True, help="the project slug the token is bound to")
    p.add_argument("--code", required=True, help="e.g. glucose")
    p.add_argument("--format", choices=sorted(EXTENSIONS), default="parquet")
    p.add_argument("--out", type=Path, required=True, help="folder for the files and the saved cursor")
    p.add_argument("--api", default=os.environ.get("TELEHEALTH_API_URL", "http://127.0.0.1:8000"))
    p.add_argument("--token", help="researcher bearer token; or TELEHEALTH_RESEARCH_TOKEN")
    p.set_defaults(func=main)
