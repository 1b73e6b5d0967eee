"""The restart policy of `telehealth up`."""

from launcher.supervise import RestartPolicy, Supervisor

POLICY = RestartPolicy(base_delay_s=1, max_delay_s=8, budget=4, window_s=100, slow_delay_s=60)


def test_backoff_doubles_up_to_the_cap_then_slows_down_past_the_budget() -> None:
    assert [POLICY.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 60, 60]


def test_a_crash_is_restarted_after_its_backoff_and_counted_once() -> None:
    sup = Supervisor(POLICY)
    assert sup.tick(["gateway"], now=0.0)[0] == []
    assert sup.tick(["gateway"], now=0.5) == ([], [])  # waiting: not counted again
    assert sup.tick(["gateway"], now=1.0) == (["gateway"], [])
    restart, notes = sup.tick(["gateway"], now=2.0)  # crashed again: 2 s this time
    assert restart == [] and "restarting in 2s" in notes[0]
    assert sup.tick([], now=3.9) == ([], [])
    assert sup.tick([], now=4.0) == (["gateway"], [])


def test_a_crash_loop_exhausts_the_budget_and_is_reported_while_others_run() -> None:
    sup = Supervisor(POLICY)
    now = 0.0
    reports: list[str] = []
    for _ in range(POLICY.budget):
        _, notes = sup.tick(["processor"], now)
        reports += notes
        now += 10  # each backoff (at most 8 s) has passed
        assert sup.tick([], now)[0] == ["processor"]
    assert not any("FAILING" in r for r in reports) and sup.failing(now) == []
    _, notes = sup.tick(["processor"], now)
    assert "FAILING" in notes[0] and "budget of 4" in notes[0]
    assert sup.failing(now) == ["processor"]
    # the failing one waits slow_delay; another service still restarts after its base delay
    assert sup.tick(["gateway"], now + 10)[0] == []
    assert sup.tick([], now + 11) == (["gateway"], [])
    assert sup.tick([], now + 60) == (["processor"], [])


def test_the_window_forgets_old_crashes() -> None:
    sup = Supervisor(POLICY)
    for t in (0.0, 10.0, 20.0):
        sup.tick(["api"], t)
        sup.tick([], t + 9)
    _, notes = sup.tick(["api"], 500.0)  # long after the window: back to the base delay
    assert "restarting in 1s" in notes[0]
    assert sup.failing(500.0) == []
