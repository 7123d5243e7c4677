"""The portal tests that run a gateway run it on each store backend (as tests/surveys); the
browser test uses the web chat's Chromium fixtures."""

from __future__ import annotations

from tests.gateway.conftest import gateway_factory, receiver
from tests.surveys.conftest import OnBackend, on_backend
from tests.webchat.conftest import browser, fast_availability, watch

__all__ = [
    "OnBackend",
    "browser",
    "fast_availability",
    "gateway_factory",
    "on_backend",
    "receiver",
    "watch",
]
