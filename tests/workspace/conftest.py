"""The workspace tests run the in-process gateway of tests/gateway/conftest.py, on each
store backend where they touch the store (`on_backend`, as the survey tests do)."""

from __future__ import annotations

from tests.gateway.conftest import gateway_factory, receiver
from tests.surveys.conftest import on_backend

__all__ = ["gateway_factory", "on_backend", "receiver"]
