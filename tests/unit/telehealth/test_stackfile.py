"""Admin commands find a running `telehealth up` through its data dir, and only a live one."""

import os
import subprocess
import sys
from pathlib import Path

from pydantic import SecretStr

from telehealth import stackfile
from telehealth.settings import Settings


def _running(data_dir: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data_dir,
        database_url="postgresql:///telehealth?host=/tmp/pg",
        kafka_bootstrap="127.0.0.1:9092",
        mqtt_url="mqtt://127.0.0.1:1883",
        mqtt_ca_file=data_dir / "ca.pem",
        mqtt_admin_password=SecretStr("admin-secret"),
        mqtt_gateway_password=SecretStr("gateway-secret"),
    )


def test_unconfigured_commands_take_the_running_stack(tmp_path: Path) -> None:
    written = stackfile.write(_running(tmp_path), api_url="http://127.0.0.1:8000", metrics={"gateway": 9100})
    assert written.stat().st_mode & 0o777 == 0o600
    assert "gateway-secret" not in written.read_text(), "only the admin secret is shared"

    found = stackfile.with_running_stack(Settings(_env_file=None, data_dir=tmp_path))  # type: ignore[call-arg]
    assert found.database_url == "postgresql:///telehealth?host=/tmp/pg"
    assert (found.kafka_bootstrap, found.mqtt_url) == ("127.0.0.1:9092", "mqtt://127.0.0.1:1883")
    assert found.mqtt_ca_file == tmp_path / "ca.pem"
    assert found.mqtt_admin_password is not None
    assert found.mqtt_admin_password.get_secret_value() == "admin-secret"
    assert found.mqtt_gateway_password is None

    configured = Settings(_env_file=None, data_dir=tmp_path, database_url="postgresql://elsewhere/db")  # type: ignore[call-arg]
    assert stackfile.with_running_stack(configured) == configured, "configured servers win"

    stackfile.remove(found)
    assert not written.exists()
    assert stackfile.with_running_stack(Settings(_env_file=None, data_dir=tmp_path)).database_url is None  # type: ignore[call-arg]


def test_a_file_left_by_a_dead_stack_is_ignored(tmp_path: Path) -> None:
    written = stackfile.write(_running(tmp_path), api_url="http://127.0.0.1:8000", metrics={})
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    written.write_text(written.read_text().replace(f'"pid": {os.getpid()}', f'"pid": {gone.stdout.strip()}'))
    assert stackfile.read_live(Settings(_env_file=None, data_dir=tmp_path)) is None  # type: ignore[call-arg]
