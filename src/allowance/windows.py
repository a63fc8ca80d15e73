"""Window arithmetic, pure: how much of a limit is used at ``now``, how to charge and return
units, and when a given amount fits again. Times are epoch seconds (UTC floats).

Windows are half-open: an anchored window opened at ``s`` covers [s, s + L); a sliding window at
``t`` covers (t - L, t]; a calendar period covers [start, next start).
"""

from __future__ import annotations

import bisect
from datetime import UTC, date, datetime, timedelta
from typing import Literal, cast
from zoneinfo import ZoneInfo

from allowance.state import Counter

CalendarUnit = Literal["day", "week", "month"]
BillingUnit = Literal["week", "month"]
DAY = 86400.0

# A counter outlives its window by this much before a store drops it (on a write, in a sweep,
# by a Redis TTL): a clock that then steps back (NTP, app servers that disagree) by up to this
# much still finds the usage counted there, instead of granting it again.
KEEP_AFTER = 300.0


class Window:
    kind: str
    length: float = 0.0  # seconds, for anchored and sliding (0 for calendar)

    def used(self, c: Counter, now: float) -> int:
        raise NotImplementedError

    def charge(self, c: Counter, units: int, now: float) -> float:
        """Add ``units`` at ``now``; return the mark that a release needs to find them."""
        raise NotImplementedError

    def uncharge(self, c: Counter, mark: float, units: int, now: float) -> None:
        """Return ``units`` charged under ``mark``, if that window still holds them."""
        raise NotImplementedError

    def fits_at(self, c: Counter, now: float, need: int, cap: int) -> float | None:
        """The earliest time >= now at which ``need`` more units fit under ``cap``, assuming no
        other grant; None if ``need`` exceeds ``cap`` (it never fits)."""
        raise NotImplementedError

    def span(self, c: Counter, now: float) -> tuple[float | None, float | None]:
        """(window_start, resets_at) of the meter at ``now``."""
        raise NotImplementedError

    def expires_at(self, c: Counter) -> float | None:
        """When the counter holds nothing any more and can be deleted (None: already empty)."""
        raise NotImplementedError

    def changes_at(self, c: Counter, now: float) -> float | None:
        """The first time after ``now`` at which what this counter holds changes by time alone
        (a window closes, a sliding grant leaves, a period ends); None if it never does. Until
        then ``used``, ``span`` and ``fits_at`` (but for a ``now`` it returns) read the same."""
        raise NotImplementedError

    def quota_span(self, c: Counter, now: float) -> tuple[float, float]:
        """(length, resets) of the window a decision at ``now`` counts in, as the rate-limit
        headers say it: before this decision's charge, no open window (or an empty sliding
        one) means the grant opens one now."""
        return self.length, self.span(c, now)[1] or now + self.length


class AnchoredWindow(Window):
    kind = "anchored"

    def __init__(self, length: float) -> None:
        self.length = length

    def used(self, c: Counter, now: float) -> int:
        start = c.start
        if start is not None and now < start + self.length:
            return c.used
        return 0

    def charge(self, c: Counter, units: int, now: float) -> float:
        start = c.start
        if start is None or now >= start + self.length:
            c.start = start = now
            c.used = units
        else:
            c.used += units
        return start

    def uncharge(self, c: Counter, mark: float, units: int, now: float) -> None:
        if c.start == mark:  # the window stays open even if it drops to 0 (it was opened)
            c.used = max(0, c.used - units)

    def fits_at(self, c: Counter, now: float, need: int, cap: int) -> float | None:
        if need > cap:
            return None
        if self.used(c, now) + need <= cap:
            return now
        assert c.start is not None  # used > 0 implies an open window
        return c.start + self.length

    def span(self, c: Counter, now: float) -> tuple[float | None, float | None]:
        start = c.start
        if start is not None and now < start + self.length:
            return start, start + self.length
        return None, None

    def expires_at(self, c: Counter) -> float | None:
        return None if c.start is None else c.start + self.length

    def changes_at(self, c: Counter, now: float) -> float | None:
        start = c.start
        return start + self.length if start is not None and now < start + self.length else None


class SlidingWindow(Window):
    """Exact: keeps each grant's time and units, so at most ``cap`` units lie in any (t-L, t]."""

    kind = "sliding"

    def __init__(self, length: float) -> None:
        self.length = length

    def _prune(self, c: Counter, now: float) -> list[list[float | int]]:
        entries = c.entries
        if entries is None:
            c.entries = entries = []
            c.used = 0
            return entries
        horizon = now - self.length
        while entries and entries[0][0] <= horizon:
            c.used -= int(entries[0][1])
            del entries[0]
        return entries

    def used(self, c: Counter, now: float) -> int:
        entries = c.entries
        if not entries:
            return 0
        horizon = now - self.length
        if entries[0][0] > horizon:
            return c.used
        if entries[-1][0] <= horizon:
            return 0
        total = 0
        for t, n in entries:
            if t > horizon:
                total += n
        return total

    def charge(self, c: Counter, units: int, now: float) -> float:
        entries = self._prune(c, now)
        if entries and entries[-1][0] == now:
            entries[-1][1] = int(entries[-1][1]) + units
        elif not entries or entries[-1][0] < now:
            entries.append([now, units])
        else:  # a clock that stepped back a little: keep entries sorted
            times = [e[0] for e in entries]
            i = bisect.bisect_left(times, now)
            if times[i] == now:
                entries[i][1] = int(entries[i][1]) + units
            else:
                entries.insert(i, [now, units])
        c.used += units
        return now

    def uncharge(self, c: Counter, mark: float, units: int, now: float) -> None:
        entries = c.entries or []
        for i, entry in enumerate(entries):
            if entry[0] == mark:
                back = min(units, int(entry[1]))
                entry[1] = int(entry[1]) - back
                c.used -= back
                if entry[1] == 0:
                    del entries[i]
                break
        self._prune(c, now)

    def fits_at(self, c: Counter, now: float, need: int, cap: int) -> float | None:
        if need > cap:
            return None
        excess = self.used(c, now) + need - cap
        if excess <= 0:
            return now
        horizon = now - self.length
        for t, n in c.entries or ():  # units leave one grant at a time, oldest first
            if t > horizon:
                excess -= n
                if excess <= 0:
                    return float(t) + self.length
        raise AssertionError("unreachable: need <= cap")

    def span(self, c: Counter, now: float) -> tuple[float | None, float | None]:
        horizon = now - self.length
        for t, _ in c.entries or []:
            if t > horizon:
                return float(t), float(t) + self.length
        return None, None

    def expires_at(self, c: Counter) -> float | None:
        return float(c.entries[-1][0]) + self.length if c.entries else None

    def changes_at(self, c: Counter, now: float) -> float | None:
        return self.span(c, now)[1]  # when the oldest grant in the window leaves it


class CalendarWindow(Window):
    """Calendar day, ISO week (from Monday) or month in ``tz``; resets at local midnight."""

    kind = "calendar"

    def __init__(self, unit: CalendarUnit, tz: str = "UTC") -> None:
        self.unit = unit
        self.tz = tz
        self._zone = UTC if tz == "UTC" else ZoneInfo(tz)
        self._cached: tuple[float, float] = (0.0, -1.0)
        self._bounds: tuple[float, float, float, float] = (0.0, 0.0, -1.0, 0.0)

    def period(self, now: float) -> tuple[float, float]:
        """[start, end) of the period holding ``now``; cached since most calls share one."""
        start, end = self._cached
        if start <= now < end:
            return start, end
        local = datetime.fromtimestamp(now, self._zone)
        day = local.date()
        if self.unit == "day":
            first, nxt = day, day + timedelta(days=1)
        elif self.unit == "week":
            first = day - timedelta(days=day.weekday())
            nxt = first + timedelta(days=7)
        else:
            first = day.replace(day=1)
            nxt = (first + timedelta(days=32)).replace(day=1)
        start = datetime(first.year, first.month, first.day, tzinfo=self._zone).timestamp()
        end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=self._zone).timestamp()
        self._cached = (start, end)
        return start, end

    def bounds(self, now: float) -> tuple[float, float, float, float]:
        """The starts of the periods before, holding and after ``now``, and the end of that
        last one: what a store's one-step script picks its period from. Cached: each
        one-step decision asks, and the periods before and after miss ``period``'s cache."""
        found = self._bounds
        if found[1] <= now < found[2]:
            return found
        start, end = self.period(now)
        found = self._bounds = (self.period(start - 1)[0], start, end, self.period(end)[1])
        return found

    def current(self, c: Counter, now: float) -> float:
        """The start of the period a decision at ``now`` counts in: ``now``'s, or the
        counter's when that is later. A clock that stepped back (NTP on the store's host, app
        servers that disagree) must neither throw away a later period's units nor grant them
        again, so a counter's period only ever moves forward."""
        start = self.period(now)[0]
        counted = c.start
        return counted if counted is not None and counted > start else start

    def used(self, c: Counter, now: float) -> int:
        start = c.start
        return c.used if start is not None and start >= self.period(now)[0] else 0

    def charge(self, c: Counter, units: int, now: float) -> float:
        start = self.period(now)[0]
        if c.start is None or c.start < start:
            c.start = start
            c.used = 0
        c.used += units
        return c.start

    def uncharge(self, c: Counter, mark: float, units: int, now: float) -> None:
        if c.start == mark:
            c.used = max(0, c.used - units)

    def fits_at(self, c: Counter, now: float, need: int, cap: int) -> float | None:
        if need > cap:
            return None
        if self.used(c, now) + need <= cap:
            return now
        return self.period(self.current(c, now))[1]

    def span(self, c: Counter, now: float) -> tuple[float | None, float | None]:
        return self.period(self.current(c, now))

    def quota_span(self, c: Counter, now: float) -> tuple[float, float]:
        start, end = self.period(self.current(c, now))
        return end - start, end

    def expires_at(self, c: Counter) -> float | None:
        if c.start is None:
            return None
        # the period after the one the units belong to starts at its end
        return self.period(c.start)[1]

    def changes_at(self, c: Counter, now: float) -> float | None:
        return None if c.start is None else self.period(now)[1]


class BillingWindow(CalendarWindow):
    """A billing month or week in UTC, renewing at an account's billing anchor: on the
    anchor's day of the month (the 31st is a shorter month's last day) or weekday, at its
    time of day. Without an anchor: the calendar month, or the ISO week from Monday, in UTC.
    The policy's window has no anchor; an account's decisions use one anchored at its own
    (``Policy.anchored``)."""

    kind = "billing"

    def __init__(self, unit: BillingUnit, anchor: float | None = None) -> None:
        super().__init__(unit, "UTC")
        self.anchor = anchor
        self._days, self._clock = 0, 0.0  # the anchor's day (from 0) and time of day
        if anchor is not None:
            at = datetime.fromtimestamp(anchor, UTC)
            self._days = at.day - 1 if unit == "month" else at.weekday()
            midnight = datetime(at.year, at.month, at.day, tzinfo=UTC).timestamp()
            self._clock = anchor - midnight

    def at(self, anchor: float) -> BillingWindow:
        """This window for an account whose billing periods renew at ``anchor``."""
        return BillingWindow(cast(BillingUnit, self.unit), anchor)

    def _renewal(self, first: date) -> float:
        """When the period renews within the calendar month or week starting on ``first``."""
        if self.unit == "month":
            last = ((first + timedelta(days=32)).replace(day=1) - first).days - 1
            days = min(self._days, last)
        else:
            days = self._days
        midnight = datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp()
        return midnight + days * DAY + self._clock

    def _step(self, first: date, by: int) -> date:
        if self.unit == "week":
            return first + timedelta(days=7 * by)
        month = first.month - 1 + by
        return date(first.year + month // 12, month % 12 + 1, 1)

    def period(self, now: float) -> tuple[float, float]:
        start, end = self._cached
        if start <= now < end:
            return start, end
        day = datetime.fromtimestamp(now, UTC).date()
        first = day.replace(day=1) if self.unit == "month" else day - timedelta(day.weekday())
        renews = self._renewal(first)
        if now < renews:
            start, end = self._renewal(self._step(first, -1)), renews
        else:
            start, end = renews, self._renewal(self._step(first, 1))
        self._cached = (start, end)
        return start, end

    def expires_at(self, c: Counter) -> float | None:
        # the longest billing period (a month: 31 days, whatever the anchor), so a sweep or
        # a TTL, which do not know the account's anchor, never drop a period still running
        if c.start is None:
            return None
        return c.start + (31 if self.unit == "month" else 7) * DAY
