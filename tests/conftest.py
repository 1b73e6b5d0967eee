"""Session fixtures: real PostgreSQL, Kafka-protocol and MQTT servers from pip-installed packages.

Nothing running on the machine is assumed. To use servers you already run, set
TELEHEALTH_TEST_DATABASE_URL (a fresh database is created on it per session),
TELEHEALTH_TEST_KAFKA_BOOTSTRAP or TELEHEALTH_TEST_MQTT_URL. TELEHEALTH_TEST_MQTT=amqtt
forces the pure-Python broker even where mosquitto is installed. TELEHEALTH_TIMESCALEDB (a
TimescaleDB build for the wheel's PostgreSQL: its directory or .tar.xz archive) runs the
embedded PostgreSQL with that extension preloaded, so the same tests run on the TimescaleDB
path (docs/architecture.md, "Storage").
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from launcher.embedded import EmbeddedKafka, EmbeddedPostgres, free_port
from launcher.mosquitto import EmbeddedMqtt
from launcher.stack import EMBEDDED_SESSION_TIMEOUT_MS, Services, start_broker, wait_http_ok
from telehealth.settings import Settings
from telehealth.storage import migrate
from telehealth.storage.migrate import preloaded

# the run's own temporary and runtime directories (tests/isolation.py)
from tests.isolation import pytest_configure as pytest_configure
from tests.isolation import pytest_sessionfinish as pytest_sessionfinish

# Property tests judge what the code does, never how fast: Hypothesis's per-example deadline
# and its "input generation is slow" check are timings, and failed a correct test on a loaded
# machine (2 cores shared with other work).
hypothesis_settings.register_profile(
    "telehealth", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("telehealth")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test that ran the services (the session's or its own `up`'s) carries the end
    of each service's log: a fault seen once in CI is then explained by its report, not lost
    with the run's directory."""
    report = yield
    if not report.failed:
        return report
    funcargs = getattr(item, "funcargs", {})
    running, tmp = funcargs.get("services"), funcargs.get("tmp_path")
    log_dirs = [running.log_dir] if isinstance(running, Services) else []
    if isinstance(tmp, Path) and (tmp / "data" / "logs").is_dir():  # a `telehealth up` of its own
        log_dirs.append(tmp / "data" / "logs")
    for log_file in sorted(f for d in log_dirs for f in d.glob("*.log")):
        lines = log_file.read_text(errors="replace").splitlines()[-_LOG_TAIL:]
        report.sections.append((f"{log_file.name} (last {len(lines)} lines)", "\n".join(lines)))
    return report


#: lines of each service log shown under a failed test
_LOG_TAIL = 60


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("telehealth")


def _fresh_database(url: str) -> tuple[str, str]:
    name = f"telehealth_test_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, psycopg.conninfo.make_conninfo(url, dbname=name)


@pytest.fixture
def scratch(database_url: str) -> Iterator[str]:
    """An empty database of its own on the test server, dropped afterwards."""
    name, url = _fresh_database(database_url)
    yield url
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres(data_dir: Path) -> Iterator[EmbeddedPostgres | None]:
    """The embedded server, or None when the suite was pointed at an external database."""
    if os.environ.get("TELEHEALTH_TEST_DATABASE_URL"):
        yield None
        return
    timescaledb = os.environ.get("TELEHEALTH_TIMESCALEDB")
    server = EmbeddedPostgres(data_dir, timescaledb=Path(timescaledb) if timescaledb else None)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def database_url(postgres: EmbeddedPostgres | None) -> Iterator[str]:
    external = os.environ.get("TELEHEALTH_TEST_DATABASE_URL")
    if postgres is not None or not external:
        assert postgres is not None
        yield postgres.url
        return
    name, url = _fresh_database(external)
    yield url
    with psycopg.connect(external, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def timescaledb(database_url: str) -> bool:
    """Whether the test server takes the TimescaleDB path (installed and preloaded)."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SHOW shared_preload_libraries").fetchone()
    return preloaded(str(row[0]) if row else "")


@pytest.fixture(scope="session")
def kafka_broker(data_dir: Path) -> Iterator[EmbeddedKafka | None]:
    """The embedded broker, or None when the suite was pointed at an external one."""
    if os.environ.get("TELEHEALTH_TEST_KAFKA_BOOTSTRAP"):
        yield None
        return
    broker = EmbeddedKafka(data_dir)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: EmbeddedKafka | None) -> str:
    if kafka_broker is not None:
        return kafka_broker.bootstrap
    return os.environ["TELEHEALTH_TEST_KAFKA_BOOTSTRAP"]


@pytest.fixture(scope="session")
def migrated(database_url: str) -> str:
    migrate(database_url)
    return database_url


@pytest.fixture(scope="session")
def _broker(data_dir: Path, migrated: str) -> Iterator[tuple[EmbeddedMqtt | str, dict[str, object]]]:
    """The locked broker (Mosquitto with dynamic security) and the settings that reach it.

    An external broker (TELEHEALTH_TEST_MQTT_URL) must be locked the same way; its logins come
    from TELEHEALTH_MQTT_ADMIN_PASSWORD, _GATEWAY_PASSWORD and _RELAY_PASSWORD."""
    external = os.environ.get("TELEHEALTH_TEST_MQTT_URL")
    if external:
        yield external, {"mqtt_url": external}
        return
    broker = EmbeddedMqtt(data_dir, prefer=os.environ.get("TELEHEALTH_TEST_MQTT") or None)
    found = start_broker(broker, migrated)
    yield broker, found
    broker.stop()


@pytest.fixture(scope="session")
def mqtt_broker(_broker: tuple[EmbeddedMqtt | str, dict[str, object]]) -> EmbeddedMqtt | str:
    return _broker[0]


@pytest.fixture(scope="session")
def settings(
    data_dir: Path,
    migrated: str,
    kafka_broker: EmbeddedKafka | None,
    kafka_bootstrap: str,
    _broker: tuple[EmbeddedMqtt | str, dict[str, object]],
) -> Settings:
    broker, found = _broker
    share = "gateway" if isinstance(broker, str) or broker.supports_shared_subscriptions else ""
    extra: dict[str, Any] = {}
    if kafka_broker is not None and "TELEHEALTH_PROCESSOR_SESSION_TIMEOUT_MS" not in os.environ:
        extra["processor_session_timeout_ms"] = EMBEDDED_SESSION_TIMEOUT_MS
    return Settings(
        database_url=migrated,
        kafka_bootstrap=kafka_bootstrap,
        gateway_share_group=share,
        api_port=free_port(),
        data_dir=data_dir,  # the gateway's spool lives here
        # the tests play a local reverse proxy, giving each test its own client address
        api_forwarded_allow_ips="127.0.0.1",
        _env_file=None,  # type: ignore[call-arg]
        **extra,
    ).model_copy(update=found)


@pytest.fixture(scope="session")
def services(settings: Settings, data_dir: Path) -> Iterator[Services]:
    """Gateway, processor and API as real child processes, as in production."""
    # Gateway and processors serve Prometheus metrics (tests read counters and assignments).
    ports: dict[str, int] = {}
    for name in ("gateway", "processor", "processor-2"):
        ports[name] = free_port(*ports.values())
    running = Services(settings, data_dir / "logs", metrics_ports=ports)
    running.start("processor", "processor")
    running.start("gateway", "gateway")
    running.start("api", "api")
    wait_http_ok(f"http://127.0.0.1:{settings.api_port}/readyz")
    yield running
    dead = running.dead()
    running.stop()
    assert not dead, f"services died during the session: {dead}; see {data_dir / 'logs'}"


@pytest.fixture(scope="session")
def api_url(services: Services, settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.api_port}"


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    from psycopg.rows import dict_row

    assert settings.database_url
    async with await psycopg.AsyncConnection.connect(
        settings.database_url, autocommit=True, row_factory=dict_row
    ) as conn:
        yield conn


@pytest.fixture
async def http(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as client:
        yield client


async def eventually(check: Any, *, timeout: float = 30.0, interval: float = 0.2) -> Any:
    """Poll an async check until it returns a truthy value; fail with its last value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = None
    while loop.time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


def eventually_sync(
    check: Callable[[], Any],
    *,
    timeout: float = 30.0,
    interval: float = 0.2,
    ignoring: tuple[type[BaseException], ...] = (),
) -> Any:
    """`eventually` for tests without an event loop (a `telehealth up` child process): poll a
    plain check, counting the exceptions in `ignoring` as not yet (a server still starting)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except ignoring as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


def metric(url: str, name: str, **labels: str) -> float:
    """One sample from a Prometheus endpoint (0 when absent): what a scraper would read."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url, timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def metrics_url(services: Services, name: str) -> str:
    return f"http://127.0.0.1:{services.metrics_ports[name]}/metrics"
