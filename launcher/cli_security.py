"""`telehealth audit verify|head` and `telehealth users set-password|revoke-tokens`."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from psycopg import AsyncConnection

from launcher.cli import _with_connection


def cmd_audit_verify(args: argparse.Namespace) -> None:
    """Walk the whole chain; exit 1 naming the first row that does not check out."""
    from telehealth.storage import audit

    expect = None
    if args.expect:
        number, _, digest = args.expect.partition(":")
        if not number.isdigit() or len(digest) != 64:
            sys.exit("telehealth: --expect takes ID:HASH as printed by `telehealth audit head`")
        expect = (int(number), digest)
    result = _with_connection(lambda conn: audit.verify(conn, expect=expect))
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

    head = _with_connection(audit.head)
    if args.json:
        at = head.at.isoformat() if head.at else None
        print(json.dumps({"id": head.id, "hash": head.hash, "at": at}))
    else:
        print(f"{head.id}:{head.hash}")


def cmd_users_set_password(args: argparse.Namespace) -> None:
    from telehealth.storage.people import set_password, user_by_name

    password = args.password or getpass.getpass(f"new password for {args.username}: ")
    if len(password) < 12:
        sys.exit("telehealth: passwords need at least 12 characters")

    async def change(conn: AsyncConnection[Any]) -> int | None:
        user = await user_by_name(conn, args.username)
        return None if user is None else await set_password(conn, user.id, password)

    revoked = _with_connection(change)
    if revoked is None:
        sys.exit(f"telehealth: no user {args.username!r}")
    print(f"password of {args.username} changed; {revoked} token(s) revoked")


def cmd_users_revoke_tokens(args: argparse.Namespace) -> None:
    from telehealth.storage.people import revoke_user_tokens, user_by_name

    async def revoke(conn: AsyncConnection[Any]) -> int | None:
        user = await user_by_name(conn, args.username)
        return None if user is None else await revoke_user_tokens(conn, user.id)

    revoked = _with_connection(revoke)
    if revoked is None:
        sys.exit(f"telehealth: no user {args.username!r}")
    print(f"{revoked} token(s) of {args.username} revoked")


def add_user_commands(users: Any) -> None:
    p = users.add_parser("set-password", help="change a password; revokes all the user's tokens")
    p.add_argument("--username", required=True)
    p.add_argument("--password", help="prompted for when omitted")
    p.set_defaults(func=cmd_users_set_password)
    p = users.add_parser("revoke-tokens", help="log a user out everywhere")
    p.add_argument("--username", required=True)
    p.set_defaults(func=cmd_users_revoke_tokens)


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
