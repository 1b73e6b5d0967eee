"""`telehealth users add|update|set-password|revoke-tokens`: account administration that
cannot hurt by accident.

`add` only ever creates; changing an existing account is `update`, which says what changed.
Every password set here passes the same policy as the API's (`telehealth.passwords`), and each
role gets what it needs to be useful: a clinician a care team, a patient their record, a
researcher their project.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import timedelta
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection

from launcher.cli_support import ROLES, with_connection
from telehealth.passwords import password_problem
from telehealth.settings import get_settings


def _require_role_fields(
    role: str, care_teams: list[str], patient_id: UUID | None, project_id: int | None
) -> None:
    if role == "clinician" and not care_teams:
        sys.exit(
            "telehealth: a clinician sees only their care teams' patients: give --care-team (repeatable)"
        )
    if role == "patient" and patient_id is None:
        sys.exit("telehealth: a patient account belongs to one patient record: give --patient-id")
    if role == "researcher" and project_id is None:
        sys.exit("telehealth: a researcher is bound to one project: give --project-id")


def _check_password(password: str, username: str) -> None:
    problem = password_problem(password, username=username)
    if problem:
        sys.exit(f"telehealth: {problem}; choose another password")


async def _check_references(
    conn: AsyncConnection[Any], patient_id: UUID | None, project_id: int | None
) -> str | None:
    from telehealth.research.projects import get_project
    from telehealth.storage.people import patient_exists

    if patient_id is not None and not await patient_exists(conn, patient_id):
        return f"no patient {patient_id}: register the patient first (POST /api/v1/patients)"
    if project_id is not None and await get_project(conn, project_id) is None:
        return f"no research project {project_id}: create and approve the project first"
    return None


def cmd_users_add(args: argparse.Namespace) -> None:
    from telehealth.storage.people import UserExists, create_user, issue_token

    _require_role_fields(args.role, args.care_team, args.patient_id, args.project_id)
    if args.password is not None:
        _check_password(args.password, args.username)

    async def add(conn: AsyncConnection[Any]) -> str:
        problem = await _check_references(conn, args.patient_id, args.project_id)
        if problem:
            sys.exit(f"telehealth: {problem}")
        try:
            user = await create_user(
                conn,
                args.username,
                args.role,
                password=args.password,
                care_teams=args.care_team,
                patient_id=args.patient_id,
                project_id=args.project_id,
            )
        except UserExists:
            sys.exit(
                f"telehealth: user {args.username!r} already exists; nothing was changed"
                " (use `telehealth users update` to change role or care teams,"
                " `telehealth users set-password` for a new password)"
            )
        return await issue_token(conn, user.id, ttl=timedelta(seconds=get_settings().token_ttl_s))

    token = with_connection(add)
    print(f"new user {args.username} ({args.role}); bearer token (shown once):\n{token}")


def cmd_users_update(args: argparse.Namespace) -> None:
    from telehealth.storage.people import update_user, user_by_name

    async def update(conn: AsyncConnection[Any]) -> str:
        current = await user_by_name(conn, args.username)
        if current is None:
            sys.exit(f"telehealth: no user {args.username!r} (`telehealth users add` creates one)")
        role = args.role or current.role
        teams = args.care_team or list(current.care_teams)
        _require_role_fields(
            role,
            teams,
            args.patient_id or current.patient_id,
            args.project_id or current.project_id,
        )
        problem = await _check_references(conn, args.patient_id, args.project_id)
        if problem:
            sys.exit(f"telehealth: {problem}")
        result = await update_user(
            conn,
            args.username,
            role=args.role,
            care_teams=args.care_team or None,
            patient_id=args.patient_id,
            project_id=args.project_id,
        )
        assert result is not None
        _, changes = result
        if not changes:
            return f"user {args.username}: nothing to change"
        lines = [f"{field}: {_show(old)} -> {_show(new)}" for field, (old, new) in changes.items()]
        if "role" in changes:
            lines.append("the role changed: every token of the user was revoked")
        return f"user {args.username} updated:\n  " + "\n  ".join(lines)

    print(with_connection(update))


def _show(value: Any) -> str:
    if isinstance(value, tuple | list):
        return ", ".join(map(str, value)) or "(none)"
    return "(none)" if value is None else str(value)


def cmd_users_set_password(args: argparse.Namespace) -> None:
    from telehealth.storage.people import set_password, user_by_name

    password = args.password or getpass.getpass(f"new password for {args.username}: ")
    _check_password(password, args.username)

    async def change(conn: AsyncConnection[Any]) -> int | None:
        user = await user_by_name(conn, args.username)
        return None if user is None else await set_password(conn, user.id, password)

    revoked = with_connection(change)
    if revoked is None:
        sys.exit(f"telehealth: no user {args.username!r}")
    print(f"password of {args.username} changed; {revoked} token(s) revoked")


def cmd_users_revoke_tokens(args: argparse.Namespace) -> None:
    from telehealth.storage.people import revoke_user_tokens, user_by_name

    async def revoke(conn: AsyncConnection[Any]) -> int | None:
        user = await user_by_name(conn, args.username)
        return None if user is None else await revoke_user_tokens(conn, user.id)

    revoked = with_connection(revoke)
    if revoked is None:
        sys.exit(f"telehealth: no user {args.username!r}")
    print(f"{revoked} token(s) of {args.username} revoked")


def add_user_commands(sub: Any) -> None:
    users = sub.add_parser("users", help="user administration").add_subparsers(
        dest="users_command", required=True
    )
    p = users.add_parser("add", help="create a user and print a bearer token; refuses an existing username")
    p.add_argument("--username", required=True)
    p.add_argument("--role", choices=ROLES, required=True)
    p.add_argument(
        "--password", help="for POST /api/v1/auth/token; optional; at least 12 characters, hard to guess"
    )
    p.add_argument("--care-team", action="append", default=[], help="repeatable; required for clinicians")
    p.add_argument("--patient-id", type=UUID, help="required for the patient role")
    p.add_argument(
        "--project-id", type=int, help="required for the researcher role: the one project it may query"
    )
    p.set_defaults(func=cmd_users_add)
    p = users.add_parser("update", help="change an existing user's role, care teams, patient or project")
    p.add_argument("--username", required=True)
    p.add_argument("--role", choices=ROLES)
    p.add_argument("--care-team", action="append", default=[], help="repeatable; replaces the user's teams")
    p.add_argument("--patient-id", type=UUID)
    p.add_argument("--project-id", type=int)
    p.set_defaults(func=cmd_users_update)
    p = users.add_parser("set-password", help="change a password; revokes all the user's tokens")
    p.add_argument("--username", required=True)
    p.add_argument("--password", help="prompted for when omitted")
    p.set_defaults(func=cmd_users_set_password)
    p = users.add_parser("revoke-tokens", help="log a user out everywhere")
    p.add_argument("--username", required=True)
    p.set_defaults(func=cmd_users_revoke_tokens)
