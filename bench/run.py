"""The benchmark: raw baselines and the end-to-end pipeline, measured in one run on one machine.

Baselines: MQTT relay alone (QoS 1 publisher -> broker -> subscriber), Kafka alone
(produce + consume), COPY alone (rows into PostgreSQL). End to end: MQTT QoS 1 -> gateway
-> Kafka -> processor -> database, timed from the first publish to the last reading stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench import research
from bench.baselines import copy_alone, kafka_alone, mqtt_relay, publish_readings
from bench.cpu import measured, us_per
from bench.fleet import admin_cohort, fleet, provision
from bench.gateway_alone import gateway_alone, until_subscribed
from bench.latency import Latency, measure
from bench.queries import QueryLoad, add_clinician, seed, token
from bench.report import machine
from bench.rss import RssSampler
from bench.soak import Soak, soak
from bench.sweep import SweepPoint, sweep
from launcher.embedded import free_port
from launcher.stack import Servers, Services, service_env, wait_http_ok
from telehealth.broker.dynsec import RELAY_USER
from telehealth.mqtt import with_login
from telehealth.settings import Settings
from telehealth.storage import migrate


def _per_reading(cpu_us: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.0f} µs" for k, v in cpu_us.items()) + " per reading"


@dataclass
class Figures:
    readings: int
    per_message: int
    publishers: int
    gateways: int
    tls: bool = False
    processors: int = 1
    mqtt_relay_msgs_s: float = 0.0
    kafka_records_s: float = 0.0
    copy_rows_s: float = 0.0
    e2e_readings_s: float = 0.0
    e2e_stored: int = 0
    #: MQTT -> gateway -> Kafka with no processor running (the gateway's own rate)
    gateway_readings_s: float = 0.0
    gateway_forwarded: int = 0
    gateway_cpu_us_per_reading: dict[str, float] = field(default_factory=dict)
    #: the same, with the gateway's durable spool off (the memory path), in the same run
    gateway_memory_readings_s: float = 0.0
    gateway_memory_cpu_us_per_reading: dict[str, float] = field(default_factory=dict)
    rss_mib: dict[str, float] = field(default_factory=dict)
    latency: Latency | None = None
    fleet: str | None = None
    research: str | None = None
    machine: dict[str, Any] = field(default_factory=dict)
    #: CPU time (user + system) each service spent per stored reading during the end-to-end
    #: run, in microseconds: steadier than readings/s on a shared machine
    cpu_us_per_reading: dict[str, float] = field(default_factory=dict)
    load_after: list[float] = field(default_factory=list)
    sweep: list[SweepPoint] = field(default_factory=list)
    #: phase ("idle", "end to end", "sweep 3,000/s") -> query name -> requests, errors,
    #: p50_ms, p99_ms, max_ms
    queries: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    soak: Soak | None = None

    def report(self) -> str:
        lines = self._throughput() if self.readings else []
        for p in self.sweep:
            lines.append(
                f"sweep: offered {p.offered_readings_s:,.0f}/s -> stored {p.achieved_readings_s:,.0f}"
                f" readings/s, publish -> stored p50 {p.p50_ms:.0f} ms, p99 {p.p99_ms:.0f} ms"
            )
        for phase, by_name in self.queries.items():
            for name, q in by_name.items():
                lines.append(
                    f"query {name}, {phase}: p50 {q['p50_ms']:.1f} ms, p99 {q['p99_ms']:.1f} ms"
                    f" ({q['requests']:.0f} requests, {q['errors']:.0f} errors)"
                )
        if self.cpu_us_per_reading:
            lines.append("CPU per stored reading (end to end): " + _per_reading(self.cpu_us_per_reading))
        lines.append("peak RSS: " + ", ".join(f"{k} {v:.0f} MiB" for k, v in self.rss_mib.items()))
        if self.soak is not None:
            lines.append(self.soak.report())
        if self.latency is not None:
            lines.append(self.latency.report())
        if self.fleet is not None:
            lines.append(self.fleet)
        if self.research is not None:
            lines.append(self.research)
        return "\n".join(lines)

    def _spool_cost(self) -> list[str]:
        if not self.gateway_memory_readings_s:
            return []
        return [
            f"gateway alone, spool off (memory path): {self.gateway_memory_readings_s:10,.0f} readings/s"
            f" (gateway CPU {_per_reading(self.gateway_memory_cpu_us_per_reading)})",
            "ratio gateway alone, durable spool / memory path (readings/s):"
            f" {self.gateway_readings_s / self.gateway_memory_readings_s:.2f}",
        ]

    def _throughput(self) -> list[str]:
        e2e_msgs = self.e2e_readings_s / self.per_message
        gateway_msgs = self.gateway_readings_s / self.per_message
        return [
            f"readings: {self.readings} ({self.per_message} per MQTT message,"
            f" {'over TLS, ' if self.tls else ''}authenticated,"
            f" {self.publishers} publisher processes, {self.gateways} gateway processes,"
            f" {self.processors} processor processes)",
            f"baseline MQTT relay (QoS 1):   {self.mqtt_relay_msgs_s:10,.0f} msg/s",
            f"baseline Kafka produce+consume:{self.kafka_records_s:10,.0f} records/s",
            f"baseline COPY into PostgreSQL: {self.copy_rows_s:10,.0f} rows/s",
            f"gateway alone (MQTT -> Kafka, no processor): {self.gateway_readings_s:10,.0f} readings/s"
            f" ({self.gateway_forwarded}/{self.readings} in Kafka;"
            f" gateway CPU {_per_reading(self.gateway_cpu_us_per_reading)})",
            f"ratio gateway alone / MQTT relay (messages): {gateway_msgs / self.mqtt_relay_msgs_s:.2f}",
            *self._spool_cost(),
            f"end to end (stored, exactly once): {self.e2e_readings_s:10,.0f} readings/s"
            f" ({self.e2e_stored}/{self.readings} stored)",
            f"ratio end-to-end / MQTT relay (messages): {e2e_msgs / self.mqtt_relay_msgs_s:.2f}",
            f"ratio end-to-end / COPY (rows):           {self.e2e_readings_s / self.copy_rows_s:.3f}",
        ]


def _stored(conn: psycopg.Connection[Any]) -> int:
    return int(conn.execute("SELECT count(*) FROM reading_receipts").fetchone()[0])  # type: ignore[index]


def _await_stored(conn: psycopg.Connection[Any], total: int, timeout_s: float = 600) -> int:
    """Poll until the database holds `total` receipts or the time is up; the count reached."""
    deadline = time.monotonic() + timeout_s
    stored = _stored(conn)
    while stored < total and time.monotonic() < deadline:
        time.sleep(0.05)
        stored = _stored(conn)
    return stored


def wait_stored(url: str, total: int) -> None:
    """Until the database holds `total` receipts: the processor has caught up on a backlog."""
    with psycopg.connect(url, autocommit=True) as conn:
        if (stored := _await_stored(conn, total)) < total:
            raise RuntimeError(f"the processor did not store the backlog ({stored}/{total})")


def end_to_end(
    settings: Settings,
    services: Services,
    devices: list[str],
    readings: int,
    per_message: int,
    publishers: int,
    load: tuple[str, str | None],
) -> tuple[float, int]:
    assert settings.database_url and settings.mqtt_url
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        before = _stored(conn)
        started, _, _ = publish_readings(load, devices, readings, per_message, publishers)
        stored = _await_stored(conn, before + readings) - before
        finished = time.perf_counter()
    if dead := services.dead():
        raise RuntimeError(f"{dead} died during the benchmark; see logs")
    return stored / (finished - started), stored


#: the alert-latency probes' patients are numbered from here, apart from the load's cohort
PROBE_FIRST = 90_000
#: seconds of dashboard queries with nothing published, the baseline for the ones under load
IDLE_QUERY_S = 5


def load_address(settings: Settings, tls: bool) -> tuple[str, str | None]:
    """Where load generators publish (URL with the relay login, CA file): the services' plain
    listener, or the devices' TLS listener."""
    if not tls:
        return settings.mqtt_relay_url(), None
    if not (settings.mqtt_device_url and settings.mqtt_relay_password and settings.mqtt_ca_file):
        raise SystemExit("telehealth bench --tls needs the broker's TLS listener (embedded Mosquitto)")
    url = with_login(settings.mqtt_device_url, RELAY_USER, settings.mqtt_relay_password.get_secret_value())
    return url, str(settings.mqtt_ca_file)


def run(
    settings: Settings,
    *,
    readings: int,
    devices: int,
    per_message: int,
    publishers: int,
    gateways: int = 1,
    processors: int = 1,
    latency_load: float = 5000,
    latency_probes: int = 40,
    fleet_devices: int = 10_000,
    fleet_rate: float = 2000,
    fleet_seconds: float = 30,
    fleet_connections: int | None = None,
    research_patients: int = 10_000,
    data_dir: Path | None = None,
    tls: bool = False,
    sweep_rates: list[float] | None = None,
    sweep_seconds: float = 5,
    queries: bool = True,
    profile_dir: Path | None = None,
    soak_rate: float = 0.0,
    soak_seconds: float = 300.0,
) -> Figures:
    figures = Figures(readings, per_message, publishers, gateways, tls, processors, machine=machine())
    api = queries or bool(latency_load)  # the latency probe reads the dashboard's stream
    if api:
        settings = settings.model_copy(update={"api_port": free_port()})
    with tempfile.TemporaryDirectory(prefix="telehealth-bench-") as tmp:
        servers = Servers(data_dir or Path(tmp))
        settings = settings.model_copy(update={"data_dir": servers.data_dir})  # the gateway's spool
        try:
            settings = servers.start(settings)
            assert settings.database_url and settings.mqtt_url and settings.kafka_bootstrap
            migrate(settings.database_url)
            cohort = asyncio.run(admin_cohort(settings, max(1, devices // 2)))
            ids = [d.device_id for p in cohort for d in p.devices.values()][:devices]
            if readings:
                print(f"baselines ({readings} each) ...", flush=True)
                figures.mqtt_relay_msgs_s = mqtt_relay(
                    load_address(settings, tls),
                    settings.mqtt_relay_url(),
                    readings // per_message,
                    publishers,
                )
                figures.kafka_records_s = asyncio.run(kafka_alone(settings.kafka_bootstrap, readings))
                figures.copy_rows_s = copy_alone(settings.database_url, readings)
            services = Services(settings, (data_dir or Path(tmp)) / "logs")
            stored_before = 0
            if readings and settings.gateway_spool:
                # The memory path first, on the same MQTT session the measured gateway takes over
                # (a second session in the share group would split the stream).
                print("gateway alone, spool off (memory path) ...", flush=True)
                env = service_env(settings, "gateway") | {
                    "TELEHEALTH_GATEWAY_CLIENT_ID": "bench-gateway-0",
                    "TELEHEALTH_GATEWAY_SPOOL": "false",
                }
                services.start("gateway-0", "gateway", env=env)
                asyncio.run(until_subscribed(settings, ids[0]))
                with measured(services, profile_dir, "gateway-memory-") as spent:
                    figures.gateway_memory_readings_s, forwarded = asyncio.run(
                        gateway_alone(
                            settings, ids, readings, per_message, publishers, load_address(settings, tls)
                        )
                    )
                figures.gateway_memory_cpu_us_per_reading = us_per(spent, forwarded)
                stored_before += forwarded  # in Kafka too: stored once the processor starts
                services.stop("gateway-0")
            for n in range(gateways):
                env = service_env(settings, "gateway") | {
                    "TELEHEALTH_GATEWAY_CLIENT_ID": f"bench-gateway-{n}"
                }
                services.start(f"gateway-{n}", "gateway", env=env)
            if readings:
                print("gateway alone (no processor) ...", flush=True)
                with psycopg.connect(settings.database_url, autocommit=True) as conn:
                    stored_before += _stored(conn)
                asyncio.run(until_subscribed(settings, ids[0]))
                with measured(services, profile_dir, "gateway-alone-") as spent:
                    figures.gateway_readings_s, figures.gateway_forwarded = asyncio.run(
                        gateway_alone(
                            settings, ids, readings, per_message, publishers, load_address(settings, tls)
                        )
                    )
                figures.gateway_cpu_us_per_reading = us_per(spent, figures.gateway_forwarded)
            for n in range(processors):  # one consumer group: the topic's partitions are shared out
                services.start("processor" if processors == 1 else f"processor-{n}", "processor")
            if readings:
                wait_stored(settings.database_url, stored_before + figures.gateway_forwarded)
            query_load: QueryLoad | contextlib.AbstractContextManager[None] = contextlib.nullcontext()
            if api:
                services.start("api", "api")
                wait_http_ok(f"http://{settings.api_host}:{settings.api_port}/readyz")
            if queries:
                patient, clinician = asyncio.run(seed(settings.database_url))
                query_load = QueryLoad(settings.api_host, settings.api_port, patient, clinician)
            time.sleep(3)  # consumer group join and MQTT subscription
            sampler = RssSampler({n: p.pid for n, p in services.procs.items()})
            sampler.start()
            try:
                with query_load:
                    during = query_load.during if isinstance(query_load, QueryLoad) else None
                    if during:
                        print("queries with no ingest ...", flush=True)
                        with during("idle"):
                            time.sleep(IDLE_QUERY_S)
                    if readings:
                        print("end to end ...", flush=True)
                        with (
                            during("end to end") if during else contextlib.nullcontext(),
                            measured(services, profile_dir) as spent,
                        ):
                            figures.e2e_readings_s, figures.e2e_stored = end_to_end(
                                settings,
                                services,
                                ids,
                                readings,
                                per_message,
                                publishers,
                                load_address(settings, tls),
                            )
                        figures.cpu_us_per_reading = us_per(spent, figures.e2e_stored)
                    if sweep_rates:
                        print("sweep of offered load ...", flush=True)
                        figures.sweep = sweep(
                            settings.database_url,
                            load_address(settings, tls),
                            ids,
                            sweep_rates,
                            sweep_seconds,
                            publishers,
                            during,
                        )
                    if soak_rate:
                        print(f"soak at {soak_rate:,.0f} readings/s for {soak_seconds:.0f} s ...", flush=True)
                        pids = {n: p.pid for n, p in services.procs.items()}
                        with during(f"soak {soak_rate:,.0f}/s") if during else contextlib.nullcontext():
                            figures.soak = soak(
                                settings.database_url,
                                load_address(settings, tls),
                                ids,
                                pids,
                                soak_rate,
                                soak_seconds,
                            )
                if isinstance(query_load, QueryLoad):
                    figures.queries = query_load.summary()
                if latency_load:
                    print("alert latency ...", flush=True)
                    probes = [
                        (p.patient_id, p.devices["oximeter"].device_id)
                        for p in asyncio.run(admin_cohort(settings, 2 * latency_probes, first=PROBE_FIRST))
                        if "oximeter" in p.devices
                    ][:latency_probes]
                    username = asyncio.run(add_clinician(settings.database_url, "bench"))
                    host, port = settings.api_host, settings.api_port
                    stream = (host, port, token(host, port, username))
                    with measured(services, profile_dir, "latency-"):
                        figures.latency = asyncio.run(
                            measure(settings, probes, ids, background_readings_s=latency_load, stream=stream)
                        )
                if fleet_devices:
                    print(f"fleet of {fleet_devices} devices ...", flush=True)
                    members, provisioned = provision(settings, servers, fleet_devices)
                    figures.fleet = asyncio.run(
                        fleet(settings, members, provisioned, fleet_rate, fleet_seconds, fleet_connections)
                    )
                if research_patients:
                    print(f"research aggregate over {research_patients} patients ...", flush=True)
                    figures.research = asyncio.run(research.measure(settings.database_url, research_patients))
                if dead := services.dead():
                    raise RuntimeError(f"{dead} died during the benchmark; see logs")
            finally:
                sampler.running = False
                figures.rss_mib = sampler.peak
                figures.load_after = [round(x, 2) for x in os.getloadavg()]
                services.stop()
        finally:
            servers.stop()
    return figures
