"""The customer portal's answer limit holds across instances: the answers are counted in
Redis (gateway/coord/ratelimit.py, whose fallback to a count per instance on Redis errors
tests/coord/test_ratelimit.py covers)."""

from __future__ import annotations

from pathlib import Path

from tests.coord.test_fanout import MakeGateway, cluster_config
from tests.portal.test_portal_api import (
    _answer,
    _contact_of,
    _conversation,
    _form,
    _inbound_texts,
    _link,
    _page,
)


async def test_the_answer_limit_counts_the_answers_on_every_instance(
    gateway_factory: MakeGateway, tmp_path: Path, pg_dsn: str, redis_url: str
) -> None:
    cfg = cluster_config(tmp_path, pg_dsn, redis_url)
    cfg["portal"] = {"enabled": True, "answers_per_hour": 2}
    _, a = await gateway_factory(cfg)
    _, b = await gateway_factory(cfg)
    conv = await _conversation(a, "p-1", "Hello")
    url = await _link(a, await _contact_of(a, conv))
    path = url[url.index("/portal/") :]
    # the balancer sends the customer's answers to A, B, A: the third is one too many
    for client, text, expected in ((a, "one", 303), (b, "two", 303), (a, "three", 429)):
        _, page, _ = await _page(client.base + path)
        action, form = _form(page, conv)
        status, _, _ = await _answer(client.base, action, form, text)
        assert status == expected, (client.base, text)
    _, page, _ = await _page(b.base + path)
    action, form = _form(page, conv)
    status, _, _ = await _answer(b.base, action, form, "four")
    assert status == 429
    assert _inbound_texts(await b.conversation(conv)) == ["Hello", "one", "two"]
