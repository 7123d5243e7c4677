"""The portal tests that run a gateway run it on each store backend (as tests/surveys)."""

from __future__ import annotations

from tests.gateway.conftest import gateway_factory
from tests.surveys.conftest import OnBackend, on_backend

__all__ = ["OnBackend", "gateway_factory", "on_backend"]
