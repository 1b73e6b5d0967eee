"""The operator's command line, run as a user runs it, against the session's servers."""

from __future__ import annotations

import os
import subprocess
import sys

from telehealth.settings import Settings


def telehealth(
    settings: Settings, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`telehealth ARGS` in a child process with only the settings an operator would export."""
    extra = env or {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEHEALTH_")}
    env["TELEHEALTH_DATABASE_URL"] = settings.database_url or ""
    env["TELEHEALTH_MQTT_URL"] = settings.mqtt_url or ""
    for name in ("mqtt_admin_password", "mqtt_gateway_password"):  # the operator's broker secrets
        secret = getattr(settings, name)
        if secret is not None:
            env[f"TELEHEALTH_{name.upper()}"] = secret.get_secret_value()
    env["TELEHEALTH_MQTT_INSECURE"] = str(settings.mqtt_insecure).lower()
    env.update(extra)
    return subprocess.run(
        [sys.executable, "-m", "launcher", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
