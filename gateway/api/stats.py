"""`/v1/stats`: the KPIs of a period, as JSON or CSV (admin and supervisor tokens).

GET /v1/stats?from=&to=&group_by=channel|queue|agent|day|hour&tz=&format=json|csv
GET /v1/stats/survey-responses?from=&to=&format=json|csv
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from connectors.http import fail
from gateway.api.auth import require
from gateway.api.common import authenticate, gateway_of
from gateway.kpis.figures import GROUPS, SURVEY_COLUMNS, StatsQuery, csv_text, iso, survey_csv

READERS = ("admin", "supervisor")
MAX_DAYS = 400
MAX_HOURS_DAYS = 31
DEFAULT_DAYS = 7
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# The calendar a period may lie in: the local days 1970-01-01 to 9998-12-31 in every time
# zone (a day either side of UTC), so that every instant of it is a date anywhere (year 1 or
# 9999 in a zone east or west of UTC is not).
EARLIEST = datetime(1969, 12, 31, tzinfo=UTC)
LATEST = datetime(9999, 1, 2, tzinfo=UTC)
_BOUNDS = "between 1970-01-01 and 9998-12-31"


def _zone(request: web.Request) -> ZoneInfo:
    name = request.query.get("tz") or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        fail(400, "invalid_parameter", "tz must be an IANA time zone such as Europe/Berlin")


def _instant(text: str, zone: ZoneInfo, end: bool, name: str) -> float:
    """A date is a local day in `tz` (as `to`: up to the end of that day); a date-time
    without an offset is local time in `tz`."""
    try:
        if _DATE.match(text):
            day = date.fromisoformat(text) + timedelta(days=1 if end else 0)
            value = datetime.combine(day, time(0), zone)
        else:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except OverflowError:  # 9999-12-31 as `to`: the end of that day is in year 10000
        _out_of_range(name)
    except ValueError:
        fail(400, "invalid_parameter", f"{name} must be a date (2026-11-29) or an ISO date-time")
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    instant = value.timestamp()
    if not EARLIEST.timestamp() <= instant <= LATEST.timestamp():
        _out_of_range(name)
    return instant


def _out_of_range(name: str) -> NoReturn:
    fail(
        400,
        "invalid_parameter",
        f"{name} must be {_BOUNDS}",
        [{"field": name, "message": f"must be {_BOUNDS}"}],
    )


def _wants_csv(request: web.Request) -> bool:
    fmt = request.query.get("format")
    if fmt is not None and fmt not in ("json", "csv"):
        fail(400, "invalid_parameter", "format must be json or csv")
    if fmt is not None:
        return fmt == "csv"
    accept = request.headers.get("Accept", "")
    return "text/csv" in accept and "application/json" not in accept


def _period(request: web.Request, zone: ZoneInfo) -> tuple[float, float, float]:
    now = gateway_of(request).clock()
    raw_to = request.query.get("to")
    raw_from = request.query.get("from")
    end = now if raw_to is None else _instant(raw_to, zone, True, "to")
    if raw_from is None:  # a week before `to`, but not before 1970
        start = max(end - DEFAULT_DAYS * 86400, 0.0)
    else:
        start = _instant(raw_from, zone, False, "from")
    if start >= end:
        fail(400, "invalid_parameter", "from must be before to")
    if end - start > MAX_DAYS * 86400:
        fail(400, "invalid_parameter", f"the period is at most {MAX_DAYS} days")
    return start, end, now


def _csv(body: str, name: str) -> web.Response:
    return web.Response(
        body=body.encode("utf-8"),
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Content-Type-Options": "nosniff",
        },
    )


async def get_stats(request: web.Request) -> web.Response:
    require(authenticate(request), *READERS)
    zone = _zone(request)
    group_by = request.query.get("group_by")  # `group_by=` (empty) is not one of them
    if group_by is not None and group_by not in GROUPS:
        fail(400, "invalid_parameter", f"group_by must be one of {', '.join(GROUPS)}")
    start, end, now = _period(request, zone)
    if group_by == "hour" and end - start > MAX_HOURS_DAYS * 86400:
        fail(400, "invalid_parameter", f"group_by=hour takes at most {MAX_HOURS_DAYS} days")
    csv_wanted = _wants_csv(request)
    channel = request.query.get("channel") or None
    query = StatsQuery(start, end, group_by, zone, now, channel)
    body = await gateway_of(request).kpis.stats(query)
    if csv_wanted:
        return _csv(csv_text(body), f"switchboard-stats-{group_by or 'totals'}.csv")
    return web.json_response(body)


def _survey_api(row: tuple[Any, ...]) -> dict[str, Any]:
    out = dict(zip(SURVEY_COLUMNS, row, strict=True))
    for name in ("sent_at", "answered_at"):
        out[name] = None if out[name] is None else iso(float(out[name]))
    return out


async def survey_responses(request: web.Request) -> web.Response:
    require(authenticate(request), *READERS)
    zone = _zone(request)
    start, end, _ = _period(request, zone)
    csv_wanted = _wants_csv(request)
    rows = await gateway_of(request).kpis.survey_rows(start, end)
    if csv_wanted:
        return _csv(survey_csv(rows), "switchboard-survey-responses.csv")
    return web.json_response({"items": [_survey_api(r) for r in rows]})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/stats", get_stats)
    app.router.add_get("/v1/stats/survey-responses", survey_responses)
