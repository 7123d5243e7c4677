"""The knowledge base's store role on both backends: suggestion events in the event log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.store import Store
from gateway.store.kb import kb_store
from tests.store.test_contract import BACKENDS, BackendFactory


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> BackendFactory:
    if request.param == "postgres":
        request.getfixturevalue("pg_server")
    return BACKENDS[request.param]


@pytest.fixture
async def store(backend: BackendFactory, tmp_path: Path) -> AsyncIterator[Store]:
    one = backend(tmp_path)
    await one.open()
    yield one
    await one.close()


async def test_suggestion_events_are_appended_to_the_log(store: Store) -> None:
    kb = kb_store(store)
    data = {"channel": "webchat", "visitor": "webchat:v_1", "articles": [{"slug": "refund"}]}
    (shown,) = await kb.kb_record("shown", data, 1000.0)
    (answered,) = await kb.kb_record("answered", {**data, "helpful": True}, 1001.0)
    assert shown.type == "kb.suggestion.shown" and answered.id > shown.id
    logged = [(e.type, e.data) for e in await store.events_since(0, 100)]
    assert logged == [
        ("kb.suggestion.shown", data),
        ("kb.suggestion.answered", {**data, "helpful": True}),
    ]
    with pytest.raises(ValueError):
        await kb.kb_record("exploded", data, 1002.0)
    assert len(await store.events_since(0, 100)) == 2
