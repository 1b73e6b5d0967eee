"""The clinical bench's scoring: which notification counts as news of which episode."""

from bench.clinical import Alarms, Episode, Score, score


def test_an_urgent_alert_raised_as_the_low_began_counts_for_its_level_2() -> None:
    """Level 1 from minute 100, level 2 from 200: the urgent alert of minute 110 was news of
    this low, 90 minutes before it reached 3.0."""
    l1, l2 = [Episode(100, 300)], [Episode(200, 300)]
    result = Score("engine")
    score(result, Alarms(alerts=[110], urgent=[110]), l1, l2)
    assert result.l2_leads == [90] and result.l2_missed == 0


def test_an_urgent_alert_of_an_earlier_episode_does_not_count() -> None:
    l1, l2 = [Episode(0, 50), Episode(100, 300)], [Episode(10, 50), Episode(200, 300)]
    result = Score("engine")
    score(result, Alarms(alerts=[5], urgent=[5]), l1, l2)
    assert result.l2_leads == [5] and result.l2_missed == 1


def test_an_urgent_alert_long_before_the_low_began_does_not_count() -> None:
    l1, l2 = [Episode(100, 300)], [Episode(200, 300)]
    result = Score("engine")
    score(result, Alarms(alerts=[30], urgent=[30]), l1, l2)
    assert result.l2_leads == [] and result.l2_missed == 1
