"""`telehealth devices provision|reassign` for Nightscout uploaders (kind `uploader`): HTTP
credentials instead of a broker login."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from psycopg import AsyncConnection

from launcher.cli_support import with_connection
from telehealth.storage import uploaders
from telehealth.storage.devices import DeviceExists
from telehealth.storage.uploaders import UploaderCredentials


def print_uploader(creds: UploaderCredentials) -> None:
    print(f"uploader {creds.device_id} for patient {creds.patient_id} (Nightscout API v1)")
    print(f"API secret (shown once; apps send its SHA-1): {creds.api_secret}")
    print(f"API-SECRET header value: {creds.api_secret_sha1}")
    print(f"access token (shown once; ?token= or Bearer): {creds.access_token}")


def provision(args: argparse.Namespace) -> None:
    async def go(conn: AsyncConnection[Any]) -> UploaderCredentials:
        return await uploaders.provision(conn, device_id=args.device_id, patient_id=args.patient_id)

    try:
        creds = with_connection(go)
    except DeviceExists as exc:
        sys.exit(f"telehealth: {exc}")
    print_uploader(creds)


def reassign(args: argparse.Namespace) -> bool:
    """True if the device is an uploader and was given to the patient with new credentials."""

    async def go(conn: AsyncConnection[Any]) -> UploaderCredentials | None:
        if not await uploaders.is_uploader(conn, args.device_id):
            return None
        return await uploaders.reissue(conn, args.device_id, args.patient_id)

    try:
        creds = with_connection(go)
    except LookupError as exc:
        sys.exit(f"telehealth: {exc}")
    if creds is None:
        return False
    print_uploader(creds)
    return True
