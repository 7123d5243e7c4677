"""`/v1/stats` with a period at the edge of the calendar: an answer (an empty period) or a
precise 400, never a 500 with a traceback in the log."""

from __future__ import annotations

from typing import Any

import pytest

from tests.gateway.conftest import gateway_factory

__all__ = ["gateway_factory"]


@pytest.mark.parametrize(
    "params",
    [
        {"from": "9999-12-30", "to": "9999-12-31"},  # `to` is the end of that day: year 10000
        {"to": "0001-01-02"},  # the default `from`, a week earlier, is before year 1
        {"from": "0001-01-01", "to": "0001-01-03", "tz": "Asia/Tokyo"},  # local midnight
    ],
)
@pytest.mark.parametrize("path", ["/v1/stats", "/v1/stats/survey-responses"])
async def test_a_period_at_the_edge_of_the_calendar_is_no_500(
    gateway_factory: Any, path: str, params: dict[str, str]
) -> None:
    _, client = await gateway_factory()
    status, body = await client.call("GET", path, params=params)
    assert status in (200, 400), body
    if status == 400:
        assert body["error"]["code"] == "invalid_parameter"


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"from": "9999-12-30", "to": "9999-12-31"}, "to"),
        ({"to": "0001-01-02"}, "to"),
        ({"from": "0001-01-01", "to": "0001-01-03", "tz": "Asia/Tokyo"}, "to"),
        ({"from": "0001-01-01", "to": "2026-11-29", "tz": "Asia/Tokyo"}, "from"),
        ({"from": "0001-01-01T00:00:00+14:00", "to": "2026-11-29"}, "from"),
        ({"from": "2026-11-01", "to": "9999-12-31T23:59:59-14:00"}, "to"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/stats", "/v1/stats/survey-responses"])
async def test_a_date_outside_the_calendar_is_a_400_naming_the_parameter(
    gateway_factory: Any, path: str, params: dict[str, str], named: str
) -> None:
    _, client = await gateway_factory()
    status, body = await client.call("GET", path, params=params)
    assert status == 400, body
    assert body["error"]["code"] == "invalid_parameter"
    assert body["error"]["message"] == f"{named} must be between 1970-01-01 and 9998-12-31"
    assert body["error"]["details"] == [
        {"field": named, "message": "must be between 1970-01-01 and 9998-12-31"}
    ]


async def test_the_default_week_does_not_reach_before_1970(gateway_factory: Any) -> None:
    _, client = await gateway_factory()
    status, body = await client.call("GET", "/v1/stats", params={"to": "1970-01-03"})
    assert status == 200, body
    assert body["from"] == "1970-01-01T00:00:00Z", body


@pytest.mark.parametrize(
    "params",
    [
        {"from": "1970-01-01", "to": "1970-01-02", "tz": "Etc/GMT-14"},  # UTC+14
        {"from": "9998-12-30", "to": "9998-12-31", "tz": "Etc/GMT+12"},  # UTC-12
    ],
)
async def test_the_first_and_last_day_hold_in_every_zone(
    gateway_factory: Any, params: dict[str, str]
) -> None:
    _, client = await gateway_factory()
    status, body = await client.call("GET", "/v1/stats", params=params | {"group_by": "day"})
    assert status == 200, body
    assert [g["key"] for g in body["groups"]] == [params["from"], params["to"]]
    status, body = await client.call("GET", "/v1/stats", params=params | {"group_by": "hour"})
    assert status == 200, body
    assert len(body["groups"]) == 48
