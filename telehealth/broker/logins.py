"""The services' own broker logins (admin, gateway, relay): random secrets kept in one file
with owner-only permissions, so `telehealth up` keeps them across restarts."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from telehealth.broker.dynsec import ADMIN_USER, GATEWAY_USER, RELAY_USER, hash_password
from telehealth.security import url_safe_secret


@dataclass(frozen=True)
class ServiceLogins:
    admin: str
    gateway: str
    relay: str

    @classmethod
    def generate(cls) -> ServiceLogins:
        return cls(*(url_safe_secret(24) for _ in range(3)))

    def hashes(self) -> dict[str, str]:
        return {
            ADMIN_USER: hash_password(self.admin),
            GATEWAY_USER: hash_password(self.gateway),
            RELAY_USER: hash_password(self.relay),
        }


def load_or_create(path: Path) -> ServiceLogins:
    if path.exists():
        return ServiceLogins(**json.loads(path.read_text()))
    logins = ServiceLogins.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(asdict(logins), out)
    return logins
