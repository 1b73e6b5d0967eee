"""Restart policy for `telehealth up`: exponential backoff and a restart budget per window.

Pure (the caller passes the clock and the services found dead), so the policy is unit
tested without processes. A service that crashes more often than its budget allows is
reported and then retried only slowly; the others keep running either way, so one
crash-looping service never takes the whole system down.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RestartPolicy:
    #: first restart after this many seconds, doubling per crash within the window
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    #: restarts allowed within `window_s` before the service counts as failing
    budget: int = 5
    window_s: float = 300.0
    #: once failing: one more attempt this often, until it stays up again
    slow_delay_s: float = 300.0

    def delay(self, crashes_in_window: int) -> float:
        """Backoff before restart number `crashes_in_window` (1-based) of the window."""
        if crashes_in_window > self.budget:
            return self.slow_delay_s
        return min(self.base_delay_s * 2.0 ** max(0, crashes_in_window - 1), self.max_delay_s)


@dataclass
class Supervisor:
    """Tracks crashes per service and says which to restart when."""

    policy: RestartPolicy = field(default_factory=RestartPolicy)
    _crashes: dict[str, list[float]] = field(default_factory=dict)
    _due: dict[str, float] = field(default_factory=dict)

    def tick(self, dead: Iterable[str], now: float) -> tuple[list[str], list[str]]:
        """Given the services found dead at `now`: which to restart now, and what to report.

        A service already waiting for its restart is not counted again.
        """
        notes: list[str] = []
        for name in dead:
            if name in self._due:
                continue
            recent = [t for t in self._crashes.get(name, []) if now - t < self.policy.window_s]
            recent.append(now)
            self._crashes[name] = recent
            delay = self.policy.delay(len(recent))
            self._due[name] = now + delay
            if len(recent) > self.policy.budget:
                notes.append(
                    f"{name} crashed {len(recent)} times within {self.policy.window_s:.0f}s, over its "
                    f"restart budget of {self.policy.budget}; FAILING, next attempt in {delay:.0f}s "
                    "(the rest keeps running; see its log)"
                )
            else:
                notes.append(f"{name} stopped unexpectedly; restarting in {delay:.0f}s (see its log)")
        restart = sorted(name for name, at in self._due.items() if at <= now)
        for name in restart:
            del self._due[name]
        return restart, notes

    def failing(self, now: float) -> list[str]:
        """Services over their restart budget within the current window."""
        return sorted(
            name
            for name, times in self._crashes.items()
            if sum(1 for t in times if now - t < self.policy.window_s) > self.policy.budget
        )
