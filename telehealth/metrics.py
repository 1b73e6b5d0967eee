"""A small Prometheus listener for the services that run no HTTP server (gateway, processor).

Off unless `TELEHEALTH_METRICS_PORT` is set; `telehealth up` gives each service a free port
and prints it. The API serves the same registry format at its own `/metrics`.
"""

from __future__ import annotations

import logging

from prometheus_client import start_http_server

from telehealth.settings import Settings

log = logging.getLogger(__name__)


def serve_metrics(settings: Settings, service: str) -> int | None:
    """Start the listener in a daemon thread; returns the port, or None when it is off."""
    if settings.metrics_port is None:
        return None
    server, _ = start_http_server(settings.metrics_port, addr=settings.metrics_host)
    port = int(server.server_port)
    log.info("%s metrics at http://%s:%d/metrics", service, settings.metrics_host, port)
    return port
