"""Every GET of the API refuses a query parameter its OpenAPI operation does not declare:
`/v1/stats?form=2026-01-01` (a typo of `from`) must not silently answer the last 7 days.
The document is the one list, so what the console and widget send must be declared."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.gateway.conftest import gateway_factory

__all__ = ["gateway_factory"]


async def test_every_get_of_the_api_refuses_an_unknown_parameter(gateway_factory: Any) -> None:
    _, client = await gateway_factory()
    _, doc = await client.call("GET", "/v1/openapi.json")
    gets = [p for p, item in doc["paths"].items() if p.startswith("/v1/") and "get" in item]
    assert len(gets) > 15
    for path in gets:
        url = re.sub(r"{\w+}", "x", path)
        status, body = await client.call("GET", url, params={"frobnicate": "1"})
        assert status == 400, (path, body)
        assert body["error"]["code"] == "invalid_parameter", (path, body)
        assert body["error"]["message"] == "unknown query parameter 'frobnicate'", path
        assert body["error"]["details"] == [
            {"field": "frobnicate", "message": "unknown query parameter"}
        ], path


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/stats", {"form": "2026-01-01"}),
        ("/v1/stats/survey-responses", {"form": "2026-01-01"}),
        ("/v1/kb/search", {"q": "refund", "language": "de"}),
        ("/v1/quarantine", {"state": "new"}),
        ("/v1/surveys", {"contact": "c1"}),
        ("/v1/offers", {"agent_id": "bob"}),
        ("/v1/agents", {"queue": "billing"}),
    ],
)
async def test_a_typo_is_refused_not_ignored(
    gateway_factory: Any, path: str, params: dict[str, str]
) -> None:
    _, client = await gateway_factory()
    status, body = await client.call("GET", path, params=params)
    (name,) = [n for n in params if n not in ("q",)]
    assert status == 400, body
    assert body["error"]["message"] == f"unknown query parameter {name!r}"


async def test_what_the_console_sends_is_accepted(gateway_factory: Any) -> None:
    """The query parameters gateway/console/*.js send, each declared."""
    _, client = await gateway_factory()
    reports = {"from": "2026-11-01", "to": "2026-11-07", "tz": "Europe/Berlin"}
    for extra in ({"group_by": "day", "channel": "api"}, {"group_by": "agent", "format": "csv"}):
        status, body = await client.call("GET", "/v1/stats", params=reports | extra)
        assert status == 200, body
    console = {
        "status": "open",
        "queue": "billing",
        "channel": "api",
        "assignee": "none",
        "tag": "vip",
        "sla": "ok",
        "waiting": "true",
        "unread": "false",
        "sort": "-created_at",
        "limit": "50",
    }
    status, body = await client.call("GET", "/v1/conversations", params=console)
    assert status == 200, body
    status, body = await client.call("GET", "/v1/search", params={"q": "refund", "limit": "50"})
    assert status == 200, body
    # The stream takes the token from the query (browsers): checked as a token, not refused.
    status, body = await client.call(
        "GET", "/v1/events", token=None, params={"access_token": "wrong"}
    )
    assert status == 401, body
    status, body = await client.call("GET", "/v1/kb/search", token=None, params={"q": "x"})
    assert status in (200, 404), body  # 404: no knowledge base configured; never a 400


async def test_an_empty_group_by_is_not_one_of_the_groups(gateway_factory: Any) -> None:
    _, client = await gateway_factory()
    status, body = await client.call("GET", "/v1/stats", params={"group_by": ""})
    assert status == 400, body
    assert body["error"]["message"].startswith("group_by must be one of channel")
