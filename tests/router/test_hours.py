"""Business hours: open/closed, next opening and closing, business time between instants,
table-driven over the hard days (DST both ways in Europe/Berlin, ranges over midnight, a
public holiday, special hours)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from router.hours import (
    Calendar,
    HoursConfig,
    add_business_seconds,
    business_seconds_between,
    is_open,
    next_close,
    next_open,
)

BERLIN = ZoneInfo("Europe/Berlin")
H = 3600.0


def at(text: str) -> float:
    """Local Berlin wall time 'YYYY-MM-DD HH:MM' (first occurrence) → epoch seconds."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp()


def utc(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def local(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, BERLIN).strftime("%Y-%m-%d %H:%M %Z")


OFFICE = Calendar.of(
    HoursConfig.model_validate(
        {
            "timezone": "Europe/Berlin",
            "weekly": {
                "mon": ["08:00-18:00"],
                "tue": ["08:00-18:00"],
                "wed": ["08:00-12:00", "13:00-18:00"],
                "thu": ["08:00-18:00"],
                "fri": ["08:00-18:00", "22:00-02:00"],  # a late shift over midnight
                "sun": ["01:00-04:00"],  # across the DST switch
            },
            "holidays": {"country": "DE", "subdiv": "BY"},
            "closed": ["2026-12-24"],
            "special": {"2026-12-31": ["09:00-12:00"], "2026-04-06": ["10:00-14:00"]},
        }
    )
)


@pytest.mark.parametrize(
    ("when", "open_"),
    [
        ("2026-03-23 07:59", False),  # Monday before opening
        ("2026-03-23 08:00", True),
        ("2026-03-23 17:59", True),
        ("2026-03-23 18:00", False),  # the end is exclusive
        ("2026-03-25 12:30", False),  # Wednesday lunch break
        ("2026-03-27 23:30", True),  # Friday's late shift ...
        ("2026-03-28 01:59", True),  # ... runs over midnight into Saturday
        ("2026-03-28 02:00", False),
        ("2026-03-28 10:00", False),  # Saturday closed
        ("2026-04-03 10:00", False),  # Good Friday (DE holiday)
        ("2026-04-06 09:00", False),  # Easter Monday has special hours 10-14
        ("2026-04-06 11:00", True),
        ("2026-12-24 10:00", False),  # an explicit closed date (a Thursday)
        ("2026-12-31 10:00", True),  # special hours on New Year's Eve
        ("2026-12-31 13:00", False),
        ("2026-10-25 03:30", True),  # Sunday 01:00-04:00 on the day the clocks go back
    ],
)
def test_is_open(when: str, open_: bool) -> None:
    assert is_open(OFFICE, at(when)) is open_


@pytest.mark.parametrize(
    ("when", "opens", "closes"),
    [
        ("2026-03-23 07:00", "2026-03-23 08:00 CET", "2026-03-23 18:00 CET"),
        ("2026-03-23 09:00", "2026-03-23 09:00 CET", "2026-03-23 18:00 CET"),
        ("2026-03-25 12:10", "2026-03-25 13:00 CET", "2026-03-25 18:00 CET"),
        # Friday evening → the late shift, which closes on Saturday at 02:00.
        ("2026-03-27 19:00", "2026-03-27 22:00 CET", "2026-03-28 02:00 CET"),
        # Saturday → Sunday 01:00, the night the clocks go forward: closes 04:00 CEST.
        ("2026-03-28 12:00", "2026-03-29 01:00 CET", "2026-03-29 04:00 CEST"),
        # Good Friday → (Saturday closed) → Sunday 01:00.
        ("2026-04-03 09:00", "2026-04-05 01:00 CEST", "2026-04-05 04:00 CEST"),
        # Christmas Eve (closed) → 25th and 26th are holidays → Sunday 27th 01:00.
        ("2026-12-24 09:00", "2026-12-27 01:00 CET", "2026-12-27 04:00 CET"),
    ],
)
def test_next_open_and_close(when: str, opens: str, closes: str) -> None:
    assert local(next_open(OFFICE, at(when))) == opens
    assert local(next_close(OFFICE, at(when))) == closes


@pytest.mark.parametrize(
    ("start", "end", "hours"),
    [
        # Sunday 01:00-04:00 wall time: 2 real hours in March, 4 in October.
        (utc("2026-03-28 12:00"), utc("2026-03-29 12:00"), 2.0),
        (utc("2026-10-24 12:00"), utc("2026-10-25 12:00"), 4.0),
        # A whole ordinary week: Mon, Tue, Thu, Fri 10h each, Wed 9h, the late shift 4h, Sun 3h.
        (at("2026-03-09 00:00"), at("2026-03-16 00:00"), 4 * 10 + 9 + 4 + 3),
        # Friday 17:00 to Saturday 01:00: one hour before close, three of the late shift.
        (at("2026-03-27 17:00"), at("2026-03-28 01:00"), 4.0),
        # Good Friday counts nothing.
        (at("2026-04-03 00:00"), at("2026-04-04 00:00"), 0.0),
        # Easter Monday's special hours.
        (at("2026-04-06 00:00"), at("2026-04-07 00:00"), 4.0),
        (at("2026-03-23 10:00"), at("2026-03-23 09:00"), 0.0),
    ],
)
def test_business_seconds_between(start: float, end: float, hours: float) -> None:
    assert business_seconds_between(OFFICE, start, end) == hours * H


@pytest.mark.parametrize(
    ("start", "seconds", "due"),
    [
        # 4 business hours from Monday 16:00: 2 on Monday, 2 on Tuesday.
        ("2026-03-23 16:00", 4 * H, "2026-03-24 10:00 CET"),
        # 3 hours from Wednesday 11:00: the lunch break is skipped.
        ("2026-03-25 11:00", 3 * H, "2026-03-25 15:00 CET"),
        # From Saturday noon, 3 hours: Sunday 01:00 CET + 3h of real time (the clock jumps).
        ("2026-03-28 12:00", 2 * H, "2026-03-29 04:00 CEST"),
        ("2026-03-28 12:00", 3 * H, "2026-03-30 09:00 CEST"),
        # Over Easter: Thursday 17:00 + 2h → Friday holiday, Sunday 01:00+1h.
        ("2026-04-02 17:00", 2 * H, "2026-04-05 02:00 CEST"),
    ],
)
def test_add_business_seconds(start: str, seconds: float, due: str) -> None:
    assert local(add_business_seconds(OFFICE, at(start), seconds)) == due


def test_a_skipped_wall_time_means_the_jump() -> None:
    cal = Calendar.of(HoursConfig(timezone="Europe/Berlin", weekly={"sun": ["02:30-05:00"]}))
    # 02:30 does not exist on 2026-03-29: the queue opens when the clocks jump to 03:00.
    assert local(next_open(cal, at("2026-03-28 12:00"))) == "2026-03-29 03:00 CEST"
    assert business_seconds_between(cal, utc("2026-03-29 00:00"), utc("2026-03-29 06:00")) == 2 * H


def test_no_calendar_is_always_open() -> None:
    assert is_open(None, 0.0)
    assert next_open(None, 5.0) == 5.0
    assert next_close(None, 5.0) is None
    assert business_seconds_between(None, 10.0, 70.0) == 60.0
    assert add_business_seconds(None, 10.0, 60.0) == 70.0


def test_a_calendar_that_never_opens() -> None:
    cal = Calendar.of(HoursConfig(timezone="UTC"))
    assert next_open(cal, 0.0) is None
    assert add_business_seconds(cal, 0.0, 60.0) is None


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"timezone": "UTC", "weekly": {"monday": ["08:00-18:00"]}}, "unknown day"),
        ({"timezone": "UTC", "weekly": {"mon": ["8-18"]}}, "not a range"),
        ({"timezone": "UTC", "weekly": {"mon": ["08:00-25:00"]}}, "not a time of day"),
        ({"timezone": "UTC", "holidays": {"country": "XX"}}, "knows no country"),
    ],
)
def test_bad_hours_are_refused(config: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        HoursConfig.model_validate(config)
