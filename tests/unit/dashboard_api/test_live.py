"""The hub's per-client queue: a client too slow to keep up is cut off, not buffered forever."""

from __future__ import annotations

from dashboard_api.live import Subscription


def test_subscription_overflows_instead_of_growing() -> None:
    subscription = Subscription(frozenset({"team"}))
    limit = subscription.queue.maxsize
    for pos in range(limit):
        subscription.offer({"pos": pos})
    assert not subscription.overflowed
    subscription.offer({"pos": limit})
    assert subscription.overflowed
    subscription.offer({"pos": limit + 1})  # ignored once overflowed
    assert subscription.queue.qsize() == limit
