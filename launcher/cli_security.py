"""`telehealth audit verify|head`: the audit trail's hash chain."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from launcher.cli_support import with_connection


def cmd_audit_verify(args: argparse.Namespace) -> None:
    """Walk the whole chain; exit 1 naming the first row that does not check out."""
    from telehealth.storage import audit

    expect = None
    if args.expect:
        number, _, digest = args.expect.partition(":")
        if not number.isdigit() or len(digest) != 64:
            sys.exit("telehealth: --expect takes ID:HASH as printed by `telehealth audit head`")
        expect = (int(number), digest)
    result = with_connection(lambda conn: audit.verify(conn, expect=expect))
    if result.ok:
        print(f"audit chain intact: {result.rows} rows, head {result.head.id}:{result.head.hash}")
        return
    print(
        f"audit chain BROKEN at row {result.first_bad_id}: {result.problem}\n"
        f"the {result.rows} rows before it check out (up to {result.head.id}:{result.head.hash})",
        file=sys.stderr,
    )
    raise SystemExit(1)


def cmd_audit_head(args: argparse.Namespace) -> None:
    """Print the newest row's id and hash, to publish somewhere the database admin cannot edit."""
    from telehealth.storage import audit

    head = with_connection(audit.head)
    if args.json:
        at = head.at.isoformat() if head.at else None
        print(json.dumps({"id": head.id, "hash": head.hash, "at": at}))
    else:
        print(f"{head.id}:{head.hash}")


def add_audit_commands(sub: Any) -> None:
    audit = sub.add_parser("audit", help="the audit trail").add_subparsers(
        dest="audit_command", required=True
    )
    p = audit.add_parser("verify", help="check the hash chain; exit 1 at the first tampered row")
    p.add_argument("--expect", metavar="ID:HASH", help="a head published earlier that must still be there")
    p.set_defaults(func=cmd_audit_verify)
    p = audit.add_parser("head", help="print the chain head (id:hash) for publishing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_audit_head)
