"""One settings class for every service, read from `TELEHEALTH_*` variables or a `.env` file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where the servers are and how the services behave.

    With no URLs set, `telehealth up` starts embedded servers and fills them in for its
    child services; every other command needs them configured.
    """

    model_config = SettingsConfigDict(env_prefix="TELEHEALTH_", env_file=".env", extra="ignore")

    mqtt_url: str | None = Field(None, description="mqtt://host:port of the device broker")
    kafka_bootstrap: str | None = Field(None, description="host:port[,host:port] of Kafka")
    database_url: str | None = Field(None, description="PostgreSQL connection URI")
    data_dir: Path = Field(Path(".telehealth"), description="where `up` keeps embedded data")

    api_host: str = "127.0.0.1"
    api_port: int = 8000

    topic_prefix: str = "telehealth"
    kafka_partitions: int = 4

    gateway_share_group: str | None = Field(
        "gateway", description="MQTT shared-subscription group; empty disables sharing"
    )
    gateway_max_inflight: int = Field(2000, description="MQTT messages awaiting Kafka acks")
    gateway_client_id: str = ""

    processor_group: str = "processor"
    processor_batch_max: int = 2000
    processor_batch_wait_ms: int = 20

    late_after_s: float = Field(600, description="older than this on arrival: late, no alarms")
    future_tolerance_s: float = Field(300, description="measured further ahead: flagged future")
    device_cache_ttl_s: float = 2.0
    alert_warning_after: int = Field(2, ge=1, description="consecutive breaching readings to open a warning")
    alert_sweep_s: float = Field(10, description="how often stale data and escalations are checked")
    alert_escalate_after_s: float = Field(300, description="unacknowledged urgent alerts escalate after")
    retention: str = Field("2 years", description="TimescaleDB retention for readings")
    consent_default: Literal["deny", "permit"] = Field(
        "deny", description="secondary use for patients with no consent record (deny: opt-in)"
    )
    research_watermark_s: float = Field(
        3600, description="a research bucket is released only this long after it closes (late data)"
    )
    epsilon_cap_per_patient: float = Field(
        10.0, description="differential privacy: most epsilon any one patient's data may be charged"
    )

    @property
    def readings_topic(self) -> str:
        return f"{self.topic_prefix}.readings"

    @property
    def deadletter_topic(self) -> str:
        return f"{self.topic_prefix}.deadletter"

    @property
    def alerts_topic(self) -> str:
        return f"{self.topic_prefix}.alerts"

    @property
    def status_topic(self) -> str:
        return f"{self.topic_prefix}.status"

    def require(self, *names: str) -> None:
        """Fail early, telling the operator which variable to set."""
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            env = ", ".join(f"TELEHEALTH_{n.upper()}" for n in missing)
            raise SystemExit(f"telehealth: set {env} (or run `telehealth up` for embedded servers)")


@lru_cache
def get_settings() -> Settings:
    return Settings()
