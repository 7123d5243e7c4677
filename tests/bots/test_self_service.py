"""The self-service rate's widget part: a suggestion that answered the visitor's question
(or did not) counts in Prometheus."""

from __future__ import annotations

from typing import Any

from gateway.metrics import METRICS
from tests.gateway.conftest import gateway_factory, wait_for  # noqa: F401 - fixture by name
from tests.kb.test_widget_protocol import make, visitor  # noqa: F401 - fixture by name
from tests.webchat.conftest import receive


def counted(outcome: str) -> float:
    value = METRICS.registry.get_sample_value(
        "switchboard_self_service_total", {"outcome": outcome}
    )
    return value or 0.0


async def test_suggestions_that_answered_and_did_not_are_counted(make: Any) -> None:  # noqa: F811
    _, client, base, http = await make(True)
    helpful, unhelpful = counted("kb_helpful"), counted("kb_unhelpful")
    ws, _ = await visitor(http, base)
    for answer in (True, True, False):
        await ws.send_json(
            {
                "type": "suggestion",
                "event": "answered",
                "helpful": answer,
                "items": [{"slug": "refund", "language": "en"}],
            }
        )
    await ws.send_json({"type": "ping"})
    assert (await receive(ws))["type"] == "pong"
    await wait_for(lambda: counted("kb_unhelpful") == unhelpful + 1, timeout=5)
    assert counted("kb_helpful") == helpful + 2
    _, metrics = await client.call("GET", "/metrics", token=None)
    assert 'switchboard_self_service_total{outcome="kb_helpful"}' in metrics
    await ws.close()
