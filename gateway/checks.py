"""Moved to telehealth.checks (shared with the API's Nightscout uploads); kept as an alias."""

from telehealth.checks import Lookup, Verdict, check_readings, check_status, device_problem

__all__ = ["Lookup", "Verdict", "check_readings", "check_status", "device_problem"]
