"""Fixtures of the outreach tests: each test runs on both stores (`store_cfg`), and the
email tests use the test Dovecot and aiosmtpd (tests/email/email_support.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.email.email_support import dovecot, mailbox, smtp_server
from tests.gateway.conftest import gateway_factory

__all__ = ["dovecot", "gateway_factory", "mailbox", "smtp_server"]


@pytest.fixture(params=["sqlite", "postgres"])
def store_cfg(request: pytest.FixtureRequest) -> dict[str, Any] | None:
    """The `store` block of the config: None keeps base_config's SQLite file."""
    if request.param == "sqlite":
        return None
    return {"backend": "postgres", "dsn": request.getfixturevalue("pg_dsn")}
