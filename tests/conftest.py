"""Suite-wide: every test runs with the production logging setup at `info`, and fails
when any log call raised (a clashing `extra` key, a handler that could not format)."""

from __future__ import annotations

import logging
import traceback
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway import logs
from tests.pg import PgServer
from tests.redisserver import RedisServer
from tests.standins.telegram import TelegramStandin
from tests.standins.twilio import TwilioStandin


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioStandin]:
    """Twilio's REST API, served locally (reached through the connector's base URL)."""
    standin = TwilioStandin()
    await standin.start()
    yield standin
    await standin.close()


@pytest.fixture
async def telegram() -> AsyncIterator[TelegramStandin]:
    """Telegram's Bot API, served locally (reached through the connector's base URL)."""
    standin = TelegramStandin()
    await standin.start()
    yield standin
    await standin.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store_block(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """The config's `store` block, once per backend: a SQLite file, the private PostgreSQL."""
    if request.param == "sqlite":
        return {"path": str(tmp_path / "db.sqlite")}
    return {"backend": "postgres", "dsn": request.getfixturevalue("pg_dsn")}


@pytest.fixture(autouse=True)
def production_logging() -> Iterator[None]:
    errors: list[str] = []
    root = logging.getLogger()
    handler = logs.handler()

    def handle_error(record: logging.LogRecord) -> None:
        errors.append(f"{record.name}: {record.msg!r}\n{traceback.format_exc()}")

    handler.handleError = handle_error  # type: ignore[method-assign]
    make_record = logging.Logger.makeRecord

    def checked_make_record(self: logging.Logger, *args: Any, **kwargs: Any) -> logging.LogRecord:
        try:
            return make_record(self, *args, **kwargs)
        except Exception:
            errors.append(f"{self.name}: {traceback.format_exc()}")
            raise

    logs.install_filters()
    saved = (root.level, {n: logging.getLogger(n).level for n in logs.NOISY})
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in logs.NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.Logger.makeRecord = checked_make_record  # type: ignore[method-assign]
    try:
        yield
    finally:
        logging.Logger.makeRecord = make_record  # type: ignore[method-assign]
        root.removeHandler(handler)
        root.setLevel(saved[0])
        for name, level in saved[1].items():
            logging.getLogger(name).setLevel(level)
    if errors:
        pytest.fail("a log call raised:\n" + "\n".join(errors), pytrace=False)


# --- PostgreSQL: one private server per test session, one fresh database per test -------
@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = PgServer()
    server.start()
    PgServer._running = server
    yield server
    PgServer._running = None
    server.stop()


@pytest.fixture
async def pg_dsn(pg_server: PgServer) -> str:
    """The DSN of a fresh, empty database (a schema of its own) on the session's private
    PostgreSQL."""
    return await pg_server.new_database()


# --- Redis: one private server per test session, one logical database per test ------------
@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    RedisServer._running = server
    yield server
    RedisServer._running = None
    server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of an empty logical database on the session's private Redis."""
    return redis_server.new_url()
