"""The survey tests that run a gateway run it on each store backend: `on_backend` puts a
config's store on SQLite (as written) or on a fresh schema of the session's private
PostgreSQL (tests/pg.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

OnBackend = Callable[[dict[str, Any]], dict[str, Any]]


@pytest.fixture(params=["sqlite", "postgres"])
async def on_backend(request: pytest.FixtureRequest) -> OnBackend:
    if request.param == "sqlite":
        return lambda cfg: cfg
    dsn: str = await request.getfixturevalue("pg_server").new_database()

    def put(cfg: dict[str, Any]) -> dict[str, Any]:
        cfg["store"] = {"backend": "postgres", "dsn": dsn}
        return cfg

    return put
