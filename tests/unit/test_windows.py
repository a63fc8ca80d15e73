"""Window arithmetic on its own: calendar periods in a time zone, across DST; billing periods
from an account's anchor."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from allowance.state import Counter
from allowance.windows import AnchoredWindow, BillingWindow, CalendarWindow, SlidingWindow


def ts(text: str) -> float:
    return datetime.fromisoformat(text).astimezone(UTC).timestamp()


@pytest.mark.parametrize(
    ("unit", "tz", "at", "start", "end"),
    [
        # Paris springs forward on Sun 29 Mar 2026: that day is 23 hours long
        (
            "day",
            "Europe/Paris",
            "2026-03-29T12:00:00+02:00",
            "2026-03-28T23:00:00+00:00",
            "2026-03-29T22:00:00+00:00",
        ),
        # ... and falls back on Sun 25 Oct 2026: 25 hours
        (
            "day",
            "Europe/Paris",
            "2026-10-25T23:30:00+01:00",
            "2026-10-24T22:00:00+00:00",
            "2026-10-25T23:00:00+00:00",
        ),
        (
            "week",
            "UTC",
            "2026-11-29T23:59:59+00:00",
            "2026-11-23T00:00:00+00:00",
            "2026-11-30T00:00:00+00:00",
        ),  # ISO weeks start on Monday
        (
            "week",
            "UTC",
            "2026-11-30T00:00:00+00:00",
            "2026-11-30T00:00:00+00:00",
            "2026-12-07T00:00:00+00:00",
        ),
        (
            "month",
            "UTC",
            "2028-02-29T10:00:00+00:00",
            "2028-02-01T00:00:00+00:00",
            "2028-03-01T00:00:00+00:00",
        ),
        (
            "month",
            "America/New_York",
            "2026-12-31T23:30:00-05:00",
            "2026-12-01T05:00:00+00:00",
            "2027-01-01T05:00:00+00:00",
        ),
    ],
)
def test_calendar_periods(unit: str, tz: str, at: str, start: str, end: str) -> None:
    window = CalendarWindow(unit, tz)  # type: ignore[arg-type]
    assert window.period(ts(at)) == (ts(start), ts(end))


def test_calendar_usage_resets_at_local_midnight() -> None:
    window = CalendarWindow("day", "Europe/Paris")
    c = Counter()
    window.charge(c, 5, ts("2026-11-23T23:59:00+01:00"))
    assert window.used(c, ts("2026-11-23T23:59:59+01:00")) == 5
    assert window.used(c, ts("2026-11-24T00:00:00+01:00")) == 0
    assert window.fits_at(c, ts("2026-11-23T23:59:59+01:00"), 1, 5) == ts(
        "2026-11-24T00:00:00+01:00"
    )


def test_anchored_uncharge_keeps_the_window_it_opened() -> None:
    window = AnchoredWindow(100)
    c = Counter()
    mark = window.charge(c, 3, 1000.0)
    window.uncharge(c, mark, 3, 1010.0)
    assert (c.start, c.used) == (1000.0, 0)
    window.uncharge(c, 999.0, 1, 1010.0)  # another window's mark: nothing changes
    assert c.used == 0
    assert window.expires_at(c) == 1100.0


def test_sliding_keeps_entries_sorted_when_the_clock_steps_back() -> None:
    window = SlidingWindow(60)
    c = Counter()
    window.charge(c, 1, 100.0)
    window.charge(c, 2, 99.5)
    window.charge(c, 1, 100.0)
    assert c.entries == [[99.5, 2], [100.0, 2]]
    assert window.used(c, 159.4) == 4
    assert window.used(c, 159.5) == 2
    assert window.fits_at(c, 120.0, 2, 4) == 159.5  # the oldest grant (2 units) leaves
    assert window.fits_at(c, 120.0, 3, 4) == 160.0  # both must leave
    assert window.fits_at(c, 120.0, 5, 4) is None


@pytest.mark.parametrize(
    ("unit", "anchor", "at", "start", "end"),
    [
        # the 31st renews on a shorter month's last day, and on the 31st again after it
        (
            "month",
            "2026-01-31T09:30:00Z",
            "2027-02-10T00:00:00Z",
            "2027-01-31T09:30:00Z",
            "2027-02-28T09:30:00Z",
        ),
        (
            "month",
            "2026-01-31T09:30:00Z",
            "2027-03-01T00:00:00Z",
            "2027-02-28T09:30:00Z",
            "2027-03-31T09:30:00Z",
        ),
        (
            "month",
            "2026-01-31T09:30:00Z",
            "2028-02-29T09:29:59Z",
            "2028-01-31T09:30:00Z",
            "2028-02-29T09:30:00Z",
        ),  # a leap year's February
        (
            "month",
            "2026-01-30T00:00:00Z",
            "2026-04-30T00:00:00Z",
            "2026-04-30T00:00:00Z",
            "2026-05-30T00:00:00Z",
        ),  # exactly at a renewal: the new period
        (
            "month",
            "2026-03-15T12:00:00Z",
            "2026-12-20T00:00:00Z",
            "2026-12-15T12:00:00Z",
            "2027-01-15T12:00:00Z",
        ),  # across the year
        (
            "month",
            "2026-03-15T12:00:00Z",
            "2026-01-03T00:00:00Z",
            "2025-12-15T12:00:00Z",
            "2026-01-15T12:00:00Z",
        ),  # before the anchor itself: the same day of every month
        (
            "month",
            "2026-05-01T00:00:00+02:00",
            "2026-05-10T00:00:00Z",
            "2026-04-30T22:00:00Z",
            "2026-05-30T22:00:00Z",
        ),  # an anchor's zone only says its instant: the 30th in UTC
        (
            "week",
            "2026-11-26T18:00:00Z",
            "2026-12-01T00:00:00Z",
            "2026-11-26T18:00:00Z",
            "2026-12-03T18:00:00Z",
        ),  # a Thursday's weekly plan
        (
            "week",
            "2026-11-26T18:00:00Z",
            "2026-12-03T17:59:59Z",
            "2026-11-26T18:00:00Z",
            "2026-12-03T18:00:00Z",
        ),
        # no anchor: the calendar month, the ISO week from Monday, in UTC
        ("month", None, "2026-11-30T23:59:59Z", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"),
        ("week", None, "2026-12-02T12:00:00Z", "2026-11-30T00:00:00Z", "2026-12-07T00:00:00Z"),
    ],
)
def test_billing_periods(unit: str, anchor: str | None, at: str, start: str, end: str) -> None:
    window = BillingWindow(unit, None if anchor is None else ts(anchor))  # type: ignore[arg-type]
    assert window.period(ts(at)) == (ts(start), ts(end))
    # asked again out of order, a cached period is not handed to another instant
    following = window.period(ts(end))
    assert following[0] == ts(end) and following[1] > ts(end) + 6 * 86400
    assert window.period(ts(start) - 1)[1] == ts(start)
    assert window.period(ts(at)) == (ts(start), ts(end))


def test_a_billing_counter_outlives_its_period_whatever_the_anchor() -> None:
    # a sweep or a Redis TTL knows no anchor: it must never drop a period still running
    for day in range(1, 32):
        month = BillingWindow("month", ts(f"2026-01-{day:02d}T23:00:00Z"))
        week = BillingWindow("week", ts(f"2026-01-{day:02d}T23:00:00Z"))
        for offset in range(0, 800, 9):  # days into 2026-2028, a leap February among them
            now = ts("2026-01-01T00:00:00Z") + offset * 86400
            for window in (month, week):
                start, end = window.period(now)
                expires = window.expires_at(Counter(start=start, used=1))
                assert expires is not None and expires >= end
