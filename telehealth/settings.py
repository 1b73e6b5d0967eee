"""One settings class for every service, in named groups, read from `TELEHEALTH_*` variables
or a `.env` file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from telehealth.broker.dynsec import RELAY_USER
from telehealth.mqtt import MqttAddress, parse_mqtt_url, with_login


class DatabaseSettings(BaseModel):
    """The PostgreSQL/TimescaleDB store and where `up` keeps its data."""

    group: ClassVar[str] = "database"

    database_url: str | None = Field(None, description="PostgreSQL connection URI (`up`: embedded)")
    retention: str = Field("2 years", description="TimescaleDB retention for readings")
    timescaledb: Path | None = Field(
        None,
        description="`up` and the test suite: a TimescaleDB build for the embedded PostgreSQL"
        " (directory with lib/ and share/extension/, or its .tar.xz); unset runs plain PostgreSQL",
    )
    data_dir: Path = Field(
        Path(".telehealth"), description="where `up` keeps embedded data, logs and `stack.json`"
    )


class BrokerSettings(BaseModel):
    """The MQTT broker devices use and the Kafka-protocol broker between the services."""

    group: ClassVar[str] = "brokers"

    mqtt_url: str | None = Field(
        None,
        description="mqtt://host:port (or mqtts://) of the device broker, for the services (`up`: embedded)",
    )
    mqtt_device_url: str | None = Field(
        None,
        description="the broker address devices are given, e.g. mqtts://host:8883 (`up`: its TLS listener)",
    )
    mqtt_ca_file: Path | None = Field(
        None,
        description="CA certificate that signed the broker's TLS cert (`up`: `<data dir>/mqtt/tls/ca.pem`)",
    )
    mqtt_gateway_password: SecretStr | None = Field(
        None, description="the gateway's broker login, `telehealth-gateway` (`up`: generated)"
    )
    mqtt_admin_password: SecretStr | None = Field(
        None,
        description="the broker admin `telehealth-admin`: provisioning, revocation (`up`: generated)",
    )
    mqtt_relay_password: SecretStr | None = Field(
        None,
        description="the trusted relay `telehealth-relay`: simulator hubs, bench, tests (`up`: generated)",
    )
    mqtt_insecure: bool = Field(
        False, description="the broker has no logins (pure-Python fallback); provisioning skips it"
    )
    kafka_bootstrap: str | None = Field(None, description="host:port[,host:port] of Kafka (`up`: embedded)")
    topic_prefix: str = Field(
        "telehealth", description="Kafka topics are `<prefix>.readings`, `.status`, ..."
    )
    kafka_partitions: int = Field(4, description="partitions per topic when the topics are first created")
    kafka_max_request_bytes: int = Field(
        1024 * 1024,
        description="largest Kafka produce request; a bigger record is a `kafka_rejected` dead letter",
    )


class PipelineSettings(BaseModel):
    """How the gateway and the processor move readings."""

    group: ClassVar[str] = "pipeline"

    gateway_share_group: str | None = Field(
        "gateway", description="MQTT shared-subscription group; empty disables sharing"
    )
    gateway_max_inflight: int = Field(2000, description="MQTT messages awaiting Kafka acks")
    gateway_spool: bool = Field(
        True,
        description="keep every record the gateway acknowledged in an fsynced SQLite spool under the"
        " data dir until it is stored, and replay it if Kafka lost it (the embedded Kafka keeps"
        " memory only); optional with a replicated Kafka (acks=all, min.insync.replicas=2)",
    )
    gateway_spool_max_rows: int = Field(
        500_000, description="records the spool holds at most; when full, MQTT acks wait"
    )
    gateway_client_id: str = Field(
        "",
        description="MQTT client id, stable and unique per gateway; empty: `telehealth-gateway-<hostname>`",
    )
    processor_group: str = Field("processor", description="Kafka consumer group of the processors")
    processor_batch_max: int = Field(2000, description="most records one batch takes from Kafka")
    processor_batch_wait_ms: int = Field(20, description="longest wait for a batch to fill")
    processor_express: bool = Field(
        True,
        description="store and alert on an urgent reading taken while a batch is in flight at once,"
        " in a transaction of its own, instead of after that batch",
    )
    processor_session_timeout_ms: int = Field(
        6000,
        description="how soon a killed processor's partitions move on (`up`: 1000 with the embedded broker)",
    )
    processor_instance_id: str = Field(
        "", description="static group membership: stable and unique per processor; empty: dynamic"
    )
    upload_store_wait_s: float = Field(
        10.0,
        description="a Nightscout upload is answered once the store holds its entries; past this"
        " wait it is answered 503 and the app uploads again (a repeat is stored once)",
    )
    late_after_s: float = Field(600, description="older than this on arrival: late, no alarms")
    future_tolerance_s: float = Field(300, description="measured further ahead: flagged future")
    device_cache_ttl_s: float = Field(
        2.0,
        description="how often gateway and processor refresh cached device entries"
        " (changed rows only; the whole table every 60 s)",
    )


class AlertSettings(BaseModel):
    """Alert defaults every patient starts with (each patient's thresholds override them)."""

    group: ClassVar[str] = "alerts"

    alert_warning_after: int = Field(2, ge=1, description="consecutive breaching readings to open a warning")
    alert_sweep_s: float = Field(
        10, description="how often each patient is checked for stale data (a tenth of them at a time)"
    )
    alert_escalate_after_s: float = Field(300, description="unacknowledged urgent alerts escalate after")


class SecuritySettings(BaseModel):
    """The API's listener, logins, tokens and request limits."""

    group: ClassVar[str] = "security"

    api_host: str = Field("127.0.0.1", description="address the API listens on")
    api_port: int = Field(8000, description="the API's port (`up`: 8000, or a free one if taken)")
    api_forwarded_allow_ips: str = Field(
        "",
        description="reverse proxies (comma-separated addresses, `*` for any) whose X-Forwarded-For"
        " the API believes; empty: none, the TCP peer is the client",
    )
    token_ttl_s: float = Field(8 * 3600, gt=0, description="lifetime of API bearer tokens")
    login_max_failures: int = Field(5, ge=1, description="failed logins per username before a lockout")
    login_max_failures_per_address: int = Field(
        20, ge=1, description="failed logins from one client address before a lockout"
    )
    login_window_s: float = Field(900, gt=0, description="failures older than this are forgotten")
    login_lockout_s: float = Field(900, gt=0, description="how long a locked username or address waits")
    api_max_body_bytes: int = Field(1_048_576, gt=0, description="larger request bodies get 413")
    nightscout_requests_per_min: int = Field(
        120, ge=1, description="requests one Nightscout uploader credential may make per minute (per API)"
    )


class ResearchSettings(BaseModel):
    """Consent and secondary use."""

    group: ClassVar[str] = "research"

    consent_default: Literal["deny", "permit"] = Field(
        "deny", description="secondary use for patients with no consent record (deny: opt-in)"
    )
    consent_lock_timeout_ms: int = Field(
        250,
        gt=0,
        description="the consent step's wait for a lock on the consent tables before it gives up"
        " and retries (readings and alerts never wait for it)",
    )
    consent_statement_timeout_ms: int = Field(
        5000, gt=0, description="longest statement of the consent step before it gives up and retries"
    )
    research_watermark_s: float = Field(
        3600, description="a research bucket is released only this long after it closes (late data)"
    )
    epsilon_cap_per_patient: float = Field(
        10.0, description="differential privacy: most epsilon any one patient's data may be charged"
    )


class DashboardSettings(BaseModel):
    """What clinicians see before they choose otherwise."""

    group: ClassVar[str] = "dashboard"

    patient_time_zone: str = Field(
        "Europe/London",
        description="IANA time zone of patients without one of their own: the days and times of day of"
        " their AGP and daily glucose profiles",
    )
    glucose_unit: Literal["mmol/L", "mg/dL"] = Field(
        "mmol/L", description="glucose unit of dashboard users who have not chosen one"
    )

    @field_validator("patient_time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from telehealth.zones import check_zone

        return check_zone(value)


class ObservabilitySettings(BaseModel):
    """Metrics, logs and health."""

    group: ClassVar[str] = "observability"

    metrics_port: int | None = Field(
        None, description="gateway and processor serve Prometheus metrics on this port (`up`: a free one)"
    )
    metrics_host: str = Field("127.0.0.1", description="address the metrics listener binds")
    log_format: Literal["text", "json"] = Field(
        "text", description="json: one object per line, with device_id, seq and batch_id fields"
    )
    log_level: str = Field("INFO", description="DEBUG also logs each reading forwarded and each batch")
    heartbeat_s: float = Field(1.0, gt=0, description="how often services write their heartbeat")
    stall_after_s: float = Field(10, gt=0, description="/readyz: backlog without progress this long")


#: the groups in the order the reference table shows them
GROUPS: tuple[type[BaseModel], ...] = (
    DatabaseSettings,
    BrokerSettings,
    PipelineSettings,
    AlertSettings,
    SecuritySettings,
    ResearchSettings,
    DashboardSettings,
    ObservabilitySettings,
)


class Settings(
    BaseSettings,
    DatabaseSettings,
    BrokerSettings,
    PipelineSettings,
    AlertSettings,
    SecuritySettings,
    ResearchSettings,
    DashboardSettings,
    ObservabilitySettings,
):
    """Where the servers are and how the services behave, in named groups; every field is a
    flat `TELEHEALTH_<NAME>` variable.

    With no URLs set, `telehealth up` starts embedded servers and fills them in for its
    child services; every other command needs them configured.
    """

    model_config = SettingsConfigDict(env_prefix="TELEHEALTH_", env_file=".env", extra="ignore")

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

    def mqtt_login(self, username: str, password: SecretStr | None) -> MqttAddress:
        """The broker address with one of the services' logins."""
        self.require("mqtt_url")
        assert self.mqtt_url
        ca = str(self.mqtt_ca_file) if self.mqtt_ca_file else None
        secret = password.get_secret_value() if password else None
        return parse_mqtt_url(self.mqtt_url, ca).login(username, secret)

    def mqtt_relay_url(self) -> str:
        """The broker URL with the trusted relay login (load generators, test publishers)."""
        self.require("mqtt_url")
        assert self.mqtt_url
        if self.mqtt_relay_password is None:
            return self.mqtt_url
        return with_login(self.mqtt_url, RELAY_USER, self.mqtt_relay_password.get_secret_value())

    def require(self, *names: str) -> None:
        """Fail early, telling the operator which variable to set."""
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            env = ", ".join(f"TELEHEALTH_{n.upper()}" for n in missing)
            raise SystemExit(
                f"telehealth: set {env}, or run `telehealth up` for embedded servers (commands"
                f" started from the same data dir, {self.data_dir}, then find them on their own)"
            )


@lru_cache
def get_settings() -> Settings:
    """The configured settings; with no server URLs set, those of a `telehealth up` running
    from the same data dir (`telehealth/stackfile.py`)."""
    from telehealth.stackfile import with_running_stack

    return with_running_stack(Settings())
