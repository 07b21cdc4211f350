"""Working time: the organisation's working days and hours, less its holidays, in its time zone. Every
SLA and escalation wait is counted in working hours, and reminders go out only in working time.

Moments in and out are naive UTC datetimes (as the rest of the code keeps them); each day's working
window is placed in the organisation's time zone, so a clock change (DST) moves it as people expect.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HORIZON_DAYS = 3 * 366  # no working window this far ahead: the configuration allows none (refused when loaded)


class WorkTime:
    def __init__(self, tz: ZoneInfo, days: tuple[str, ...], start: time, end: time, holidays: tuple[date, ...] = ()):
        self.tz, self.start, self.end = tz, start, end
        self.days = {DAYS.index(d) for d in days}
        self.holidays = set(holidays)

    @classmethod
    def of(cls, cfg) -> WorkTime:
        org = cfg.organization
        return cls(org.tz, org.working_days, org.work_start, org.work_end, org.holidays)

    @property
    def day_hours(self) -> float:
        """The length of one working day, in hours (a snooze lasts one)."""
        return (datetime.combine(date.min, self.end) - datetime.combine(date.min, self.start)).total_seconds() / 3600

    def capacity(self) -> float:
        """Working hours that the arithmetic (`add`, which looks `HORIZON_DAYS` ahead) finds from any
        moment, for certain: the full weeks of the horizon, less every holiday as if each fell on a working
        day, less an hour a year for a clock change inside working hours. A configured wait longer than
        this is refused when the configuration is loaded."""
        weeks = (HORIZON_DAYS - 9) // 7  # the windows begin the day before `moment`, which may fall late in a week
        hours = weeks * len(self.days) * self.day_hours - len(self.holidays) * self.day_hours - HORIZON_DAYS / 365
        return max(hours, 0.0)

    def _windows(self, moment: datetime) -> Iterator[tuple[datetime, datetime]]:
        """The working windows (naive UTC start, end) from the local day of `moment` onwards."""
        day = moment.replace(tzinfo=UTC).astimezone(self.tz).date()
        for _ in range(HORIZON_DAYS):
            if day.weekday() in self.days and day not in self.holidays:
                yield (self._utc(day, self.start), self._utc(day, self.end))
            day += timedelta(days=1)

    def _utc(self, day: date, at: time) -> datetime:
        return datetime.combine(day, at, tzinfo=self.tz).astimezone(UTC).replace(tzinfo=None)

    def is_working(self, moment: datetime) -> bool:
        return any(start <= moment < end for start, end in self._first(moment))

    def _first(self, moment: datetime) -> list[tuple[datetime, datetime]]:
        windows = self._windows(moment - timedelta(days=1))  # a window of the day before may still be open (far zones)
        return [w for _, w in zip(range(3), windows)]

    def next_working(self, moment: datetime) -> datetime:
        """`moment` if it is working time, else when working time next begins."""
        for start, end in self._windows(moment - timedelta(days=1)):
            if moment < end:
                return max(moment, start)
        raise ValueError("no working time ahead: check working_days and holidays")

    def add(self, moment: datetime, hours: float) -> datetime:
        """The moment `hours` working hours after `moment` (which may be outside working time)."""
        left = timedelta(hours=hours)
        for start, end in self._windows(moment - timedelta(days=1)):
            if end <= moment:
                continue
            begin = max(start, moment)
            if begin + left <= end:
                return begin + left
            left -= end - begin
        raise ValueError("no working time ahead: check working_days and holidays")

    def between(self, a: datetime, b: datetime) -> float:
        """Working hours from `a` to `b` (0 when `b` is not after `a`)."""
        if b <= a:
            return 0.0
        total = timedelta(0)
        for start, end in self._windows(a - timedelta(days=1)):
            if start >= b:
                break
            lo, hi = max(start, a), min(end, b)
            if hi > lo:
                total += hi - lo
        return total.total_seconds() / 3600
