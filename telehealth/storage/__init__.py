"""Storage schema, migrations and the repositories every service shares."""

from telehealth.storage.db import connect, open_pool
from telehealth.storage.migrate import migrate

__all__ = ["connect", "migrate", "open_pool"]
