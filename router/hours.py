"""Business hours (pure): when a queue is open, and how much business time lies between two
instants.

A calendar (`HoursConfig`) has a time zone, weekly hours (several `HH:MM-HH:MM` ranges per
day; a range whose end is not after its start runs over midnight into the next day),
public holidays of a country/region (the `holidays` package), explicit closed dates and
special hours for given dates (which win over holidays and the weekly hours). Everything
is computed in the calendar's zone with `zoneinfo`, so the days on which the clocks change
are as long as they really are: a range 01:00-04:00 in Europe/Berlin lasts two hours on the
last Sunday of March and four on the last Sunday of October.

A wall time that does not exist (skipped when the clocks go forward) means the instant the
clocks jump; one that exists twice (when they go back) means its first occurrence. The part
of a range over midnight that falls on the next day belongs to the day it starts on (a
holiday the next day does not cut it).

No calendar (`None`) means always open. All instants are epoch seconds.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
# How far ahead next_open/next_close look before deciding a calendar never opens/closes.
HORIZON_DAYS = 400
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def duration(value: Any) -> float:
    """Seconds from a number or a string such as `90s`, `15m`, `8h`, `2d`."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like 15m, 8h, 2d")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return float(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError("a duration is a number of seconds or a string like 15m, 8h, 2d")


def _minutes(hour: str, minute: str, end: bool) -> int:
    h, m = int(hour), int(minute)
    if m > 59 or h > 24 or (h == 24 and (m or not end)):
        raise ValueError(f"{hour}:{minute} is not a time of day")
    return h * 60 + m


def parse_range(text: str) -> tuple[int, int]:
    """`"08:00-18:00"` → minutes (480, 1080); an end not after the start runs over midnight
    (`"22:00-02:00"` → (1320, 1560)); `"00:00-24:00"` is the whole day."""
    m = _RANGE.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not a range like 08:00-18:00")
    start = _minutes(m.group(1), m.group(2), end=False)
    end = _minutes(m.group(3), m.group(4), end=True)
    if end <= start:
        end += 24 * 60
    return start, end


Ranges = Annotated[
    list[str], Field(description="Ranges like 08:00-12:00 (22:00-02:00 runs over midnight).")
]


class HolidaySource(BaseModel):
    """Public holidays from the `holidays` package."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    country: Annotated[str, Field(min_length=2, max_length=3, description="ISO code, e.g. DE.")]
    subdiv: str | None = Field(None, description="Region, e.g. BY (Bavaria).")

    @model_validator(mode="after")
    def _known(self) -> HolidaySource:
        import holidays

        try:
            holidays.country_holidays(self.country, subdiv=self.subdiv, years=2026)
        except NotImplementedError:
            raise ValueError(f"the holidays package knows no country {self.country!r}") from None
        except Exception as exc:  # an unknown subdivision
            raise ValueError(str(exc)) from None
        return self


class HoursConfig(BaseModel):
    """One business-hours calendar."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    timezone: str = Field(description="IANA zone, e.g. Europe/Berlin.")
    weekly: dict[str, Ranges] = Field(
        default_factory=dict, description="mon..sun → ranges; a day not given is closed."
    )
    holidays: HolidaySource | None = None
    closed: list[dt.date] = Field(default_factory=list, description="Extra closed dates.")
    special: dict[dt.date, Ranges] = Field(
        default_factory=dict, description="Dates with their own hours ([] = closed)."
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("weekly")
    @classmethod
    def _days(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for day, ranges in value.items():
            if day not in DAYS:
                raise ValueError(f"unknown day {day!r} (use {', '.join(DAYS)})")
            for text in ranges:
                parse_range(text)
        return value

    @field_validator("special")
    @classmethod
    def _special(cls, value: dict[dt.date, list[str]]) -> dict[dt.date, list[str]]:
        for ranges in value.values():
            for text in ranges:
                parse_range(text)
        return value


class OutOfHours(BaseModel):
    """What happens to a new conversation while its queue is closed: an automatic reply
    ("we're closed, back at 08:00", gateway `notices.closed`), then it waits for the opening
    (`park`, not routed while closed) or goes to `overflow`, a queue that is open then."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    reply: bool = Field(True, description="Send the closed notice (loop-guarded).")
    action: Literal["park", "overflow"] = "park"
    overflow: str | None = Field(None, description="The queue for `overflow`.")

    @model_validator(mode="after")
    def _target(self) -> OutOfHours:
        if self.action == "overflow" and not self.overflow:
            raise ValueError("action overflow needs an `overflow` queue")
        return self


@dataclass(eq=False)
class Calendar:
    """A compiled `HoursConfig`: open intervals per local day, cached."""

    zone: ZoneInfo
    weekly: dict[int, list[tuple[int, int]]]
    special: dict[dt.date, list[tuple[int, int]]]
    closed: frozenset[dt.date]
    holiday_source: HolidaySource | None
    _days: dict[dt.date, list[tuple[float, float]]] = field(default_factory=dict)
    _holidays: dict[int, frozenset[dt.date]] = field(default_factory=dict)

    @classmethod
    def of(cls, config: HoursConfig) -> Calendar:
        return cls(
            zone=ZoneInfo(config.timezone),
            weekly={
                DAYS.index(day): sorted(parse_range(r) for r in ranges)
                for day, ranges in config.weekly.items()
            },
            special={d: sorted(parse_range(r) for r in rs) for d, rs in config.special.items()},
            closed=frozenset(config.closed),
            holiday_source=config.holidays,
        )

    # --- days ------------------------------------------------------------------------------
    def is_holiday(self, day: dt.date) -> bool:
        if day in self.closed:
            return True
        src = self.holiday_source
        if src is None:
            return False
        year = self._holidays.get(day.year)
        if year is None:
            import holidays

            found = holidays.country_holidays(src.country, subdiv=src.subdiv, years=day.year)
            year = self._holidays[day.year] = frozenset(found.keys())
        return day in year

    def ranges_on(self, day: dt.date) -> list[tuple[int, int]]:
        """The day's ranges in minutes after its local midnight (special hours win)."""
        if day in self.special:
            return self.special[day]
        if self.is_holiday(day):
            return []
        return self.weekly.get(day.weekday(), [])

    def _instant(self, day: dt.date, minutes: int) -> float:
        """The epoch second of local wall time `minutes` after midnight of `day`."""
        day = day + dt.timedelta(days=minutes // 1440)
        minutes %= 1440
        naive = dt.datetime(day.year, day.month, day.day, minutes // 60, minutes % 60)
        ts = naive.replace(tzinfo=self.zone, fold=0).timestamp()
        if dt.datetime.fromtimestamp(ts, self.zone).replace(tzinfo=None) == naive:
            return ts
        # Skipped wall time: the first instant whose local time is not before it (the jump).
        lo = naive.replace(tzinfo=self.zone, fold=1).timestamp()
        hi = ts
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if dt.datetime.fromtimestamp(mid, self.zone).replace(tzinfo=None) >= naive:
                hi = mid
            else:
                lo = mid
        return hi

    def day_intervals(self, day: dt.date) -> list[tuple[float, float]]:
        """Open intervals (epoch seconds) of the ranges starting on local `day`."""
        cached = self._days.get(day)
        if cached is None:
            cached = [
                (self._instant(day, s), self._instant(day, e)) for s, e in self.ranges_on(day)
            ]
            if len(self._days) > 4096:
                self._days.clear()
            self._days[day] = cached
        return cached

    def local_date(self, at: float) -> dt.date:
        return dt.datetime.fromtimestamp(at, self.zone).date()

    def intervals(self, start: float, end: float | None = None) -> Iterator[tuple[float, float]]:
        """Merged open intervals overlapping [start, end) in time order, clipped to it
        (end None: up to `HORIZON_DAYS` ahead)."""
        day = self.local_date(start) - dt.timedelta(days=1)
        last = self.local_date(end) if end is not None else day + dt.timedelta(days=HORIZON_DAYS)
        current: tuple[float, float] | None = None
        while day <= last:
            for a, b in self.day_intervals(day):
                if b <= start or (end is not None and a >= end):
                    continue
                a, b = max(a, start), b if end is None else min(b, end)
                if current is not None and a <= current[1]:
                    current = (current[0], max(current[1], b))
                    continue
                if current is not None:
                    yield current
                current = (a, b)
            day += dt.timedelta(days=1)
            # A stretch can be yielded once the next day cannot touch it any more.
            if current is not None and current[1] < self._instant(day, 0):
                yield current
                current = None
        if current is not None:
            yield current


def is_open(calendar: Calendar | None, at: float) -> bool:
    if calendar is None:
        return True
    return any(a <= at < b for a, b in calendar.intervals(at, at + 1))


def next_open(calendar: Calendar | None, at: float) -> float | None:
    """`at` when open, else when it next opens (None: never within the horizon)."""
    if calendar is None:
        return at
    for a, _ in calendar.intervals(at):
        return max(a, at)
    return None


def next_close(calendar: Calendar | None, at: float) -> float | None:
    """When the current open stretch ends (if closed: the next one); None when it does not
    end within the horizon (or there is no calendar: always open)."""
    if calendar is None:
        return None
    horizon = at + HORIZON_DAYS * 86400
    for _, b in calendar.intervals(at):
        return None if b >= horizon - 2 * 86400 else b
    return None


def business_seconds_between(calendar: Calendar | None, a: float, b: float) -> float:
    """Open seconds in [a, b) (0 when b <= a)."""
    if b <= a:
        return 0.0
    if calendar is None:
        return b - a
    return sum(y - x for x, y in calendar.intervals(a, b))


def add_business_seconds(calendar: Calendar | None, start: float, seconds: float) -> float | None:
    """The instant at which `seconds` of open time have passed since `start` (None: the
    calendar does not open enough within the horizon)."""
    if calendar is None:
        return start + seconds
    if seconds <= 0:
        return next_open(calendar, start)
    left = seconds
    for a, b in calendar.intervals(start):
        if b - a >= left:
            return a + left
        left -= b - a
    return None
