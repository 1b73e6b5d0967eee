"""Shared core of the telehealth stream: wire contracts, settings, storage schema and CLI."""

__version__ = "0.1.0"
