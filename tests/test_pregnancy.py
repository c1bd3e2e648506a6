"""Pregnancy status and episodes: plain functions, tested at their boundaries."""

from datetime import date, datetime, timedelta, timezone

import pytest

from patients.pregnancy import pregnancy_status, start_window_for_trimester
from patients.services import pregnancy_episode
from prompting.pmlm.codes import MAX_PREGNANCY_DAYS

ON = date(2026, 6, 1)


def utc(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "days, weeks, trimester", [(0, 0, 1), (13 * 7 + 6, 13, 1), (14 * 7, 14, 2), (27 * 7 + 6, 27, 2), (28 * 7, 28, 3)]
)
def test_trimesters_begin_at_14_and_28_completed_weeks(days, weeks, trimester):
    status = pregnancy_status(ON - timedelta(days=days), None, ON)
    assert (status.pregnant, status.weeks, status.trimester) == (True, weeks, trimester)


def test_she_is_not_pregnant_before_the_episode_or_after_it_ended():
    start = ON - timedelta(weeks=10)
    assert not pregnancy_status(ON + timedelta(days=1), None, ON).pregnant
    assert not pregnancy_status(start, ON, ON).pregnant
    assert pregnancy_status(start, ON + timedelta(days=1), ON).pregnant


def test_an_episode_nothing_closed_lasts_at_most_the_maximum_span():
    assert pregnancy_status(ON - timedelta(days=MAX_PREGNANCY_DAYS), None, ON).pregnant
    assert not pregnancy_status(ON - timedelta(days=MAX_PREGNANCY_DAYS + 1), None, ON).pregnant


@pytest.mark.parametrize("trimester", [1, 2, 3])
def test_the_trimester_windows_agree_with_the_status(trimester):
    lower, upper = start_window_for_trimester(trimester, ON)
    assert pregnancy_status(upper, None, ON).trimester == trimester
    assert pregnancy_status(lower + timedelta(days=1), None, ON).trimester == trimester
    assert pregnancy_status(lower, None, ON).trimester != trimester


def test_the_episode_starts_at_the_latest_pregnancy_and_reaches_back_over_complications():
    normal = ("72892002", utc(date(2025, 1, 10)), None)
    pre_eclampsia = ("398254007", utc(date(2025, 5, 1)), None)
    earlier = ("72892002", utc(date(2021, 2, 1)), utc(date(2021, 10, 30)))
    assert pregnancy_episode([earlier, normal, pre_eclampsia], []) == (date(2025, 1, 10), None)


def test_the_episode_ends_at_abatement_miscarriage_or_delivery():
    assert pregnancy_episode([("72892002", utc(date(2025, 1, 10)), utc(date(2025, 10, 1)))], []) == (
        date(2025, 1, 10),
        date(2025, 10, 1),
    )
    miscarriage = ("19169002", utc(date(2025, 2, 20)), None)
    assert pregnancy_episode([("72892002", utc(date(2025, 1, 10)), None), miscarriage], []) == (
        date(2025, 1, 10),
        date(2025, 2, 20),
    )
    assert pregnancy_episode([("72892002", utc(date(2025, 1, 10)), None)], [date(2025, 9, 30)]) == (
        date(2025, 1, 10),
        date(2025, 9, 30),
    )


def test_no_pregnancy_condition_means_no_episode():
    assert pregnancy_episode([("38341003", utc(date(2025, 1, 1)), None)], []) == (None, None)
