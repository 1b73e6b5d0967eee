"""Load generation in separate processes, so the publisher does not share a GIL with the bench."""

from __future__ import annotations

import json
import multiprocessing as mp
import queue
import threading
import time
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from telehealth.mqtt import parse_mqtt_url, ssl_context
from telehealth.topics import readings_topic


def collect(out: Any, procs: list[Any], poll_s: float = 5.0) -> list[Any]:
    """One result from each worker process, however long they take (a publisher that falls
    behind its rate on a busy machine reports late, not never); raises once a worker has died,
    or all have ended, without reporting. A fixed timeout here gave up on slow publishers
    before they gave up waiting for their acks."""
    results: list[Any] = []
    while len(results) < len(procs):
        ended = all(p.exitcode is not None for p in procs)
        try:
            results.append(out.get(timeout=poll_s))
            continue
        except queue.Empty:
            pass
        if failed := [p.exitcode for p in procs if p.exitcode not in (None, 0)]:
            raise RuntimeError(f"a load worker failed (exit codes {failed})")
        if ended:
            raise RuntimeError(f"{len(procs) - len(results)} load worker(s) ended without a result")
    return results


def _payload(device_id: str, seq: int, per_message: int, when: str) -> bytes:
    readings = [
        {
            "device_id": device_id,
            "seq": seq + i,
            "measured_at": when,
            "observations": [
                {"code": "spo2", "value": 97, "unit": "%"},
                {"code": "pulse", "value": 70, "unit": "/min"},
            ],
        }
        for i in range(per_message)
    ]
    return json.dumps(readings[0] if per_message == 1 else readings).encode()


def publish_worker(
    mqtt_url: str,
    topic_template: str,
    devices: list[str],
    messages: int,
    per_message: int,
    start_seq: int,
    out: Any,
    rate_msgs_s: float | None = None,
    ca_file: str | None = None,
    stamp_now: bool = False,
    progress: Any = None,
) -> None:
    """Publish `messages` messages round-robin over `devices`, QoS 1; report (start, end, acked).

    `stamp_now` sets each reading's `measured_at` to its publish time (for latency read back
    from the receipts); otherwise one timestamp serves the whole run. `progress` (a shared
    `multiprocessing.Value`), if given, holds the acks so far, updated every 20.
    """
    address = parse_mqtt_url(mqtt_url, ca_file)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-{mp.current_process().pid}", protocol=mqtt.MQTTv311
    )
    client.username_pw_set(address.username or "bench", address.password)
    if (context := ssl_context(address)) is not None:
        client.tls_set_context(context)
    # A paced publisher has no window of its own (the rate and TCP pace it): with paho's window
    # of 1,000, messages queued behind it stalled for good on a loaded machine (a 60 s step at
    # 5,000/s: acks stopped short, the network thread idle), and never with no window.
    client.max_inflight_messages_set(0 if rate_msgs_s else 1000)
    client.max_queued_messages_set(0)
    acked = 0
    done = threading.Event()
    lock = threading.Lock()

    def on_publish(*_: object) -> None:
        nonlocal acked
        with lock:
            acked += 1
            if progress is not None and (acked % 20 == 0 or acked == messages):
                progress.value = acked
            if acked == messages:
                done.set()

    client.on_publish = on_publish
    client.connect(address.host, address.port)
    client.loop_start()
    when = datetime.now(UTC).isoformat()
    started = time.perf_counter()
    seqs = dict.fromkeys(devices, start_seq)
    for i in range(messages):
        if rate_msgs_s and i % 20 == 0:
            ahead = started + i / rate_msgs_s - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
        device = devices[i % len(devices)]
        if stamp_now:
            when = datetime.now(UTC).isoformat()
        payload = _payload(device, seqs[device], per_message, when)
        client.publish(topic_template.format(device), payload, qos=1)
        seqs[device] += per_message
    done.wait(600)
    ended = time.perf_counter()
    client.disconnect()
    client.loop_stop()
    out.put((started, ended, acked))


def subscribe_worker(mqtt_url: str, expected: int, ready: Any, out: Any) -> None:
    """Baseline relay receiver: counts QoS 1 messages on the readings filter."""
    address = parse_mqtt_url(mqtt_url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-relay-sink", protocol=mqtt.MQTTv311)
    client.username_pw_set(address.username or "bench-relay-sink", address.password)
    got = 0
    done = threading.Event()

    def on_message(*_: object) -> None:
        nonlocal got
        got += 1
        if got == expected:
            done.set()

    client.on_message = on_message

    def on_connect(c: mqtt.Client, *_: object) -> None:
        c.subscribe("bench/relay/+", qos=1)
        ready.set()

    client.on_connect = on_connect
    client.connect(address.host, address.port)
    client.loop_start()
    done.wait(600)
    out.put((time.perf_counter(), got))
    client.disconnect()
    client.loop_stop()


def background_publishers(
    mqtt_url: str, devices: list[str], readings_s: float, seconds: float, per_message: int
) -> tuple[list[Any], Any]:
    """Two paced publisher processes (not started) carrying `readings_s` readings/s for
    `seconds` over the devices' readings topics, and the queue they report to."""
    rate = readings_s / per_message
    ctx = mp.get_context("spawn")
    out: Any = ctx.Queue()
    workers = [
        ctx.Process(
            target=publish_worker,
            args=(
                mqtt_url,
                readings_topic("{}"),
                devices[i::2],
                int(rate / 2 * seconds),
                per_message,
                int(time.time() * 1000),
                out,
                rate / 2,
            ),
        )
        for i in range(2)
    ]
    return workers, out
