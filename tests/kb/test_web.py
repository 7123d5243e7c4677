"""The knowledge base over HTTP: GET /v1/kb/search, the /help pages, and a reload."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.app import Gateway
from gateway.config import load_config
from tests.gateway.conftest import ADMIN, Client, agent_token, base_config, config_text

DEMO_KB = Path(__file__).resolve().parents[2] / "config" / "kb"


@pytest.fixture
async def started(tmp_path: Path) -> AsyncIterator[tuple[Gateway, Client, Path]]:
    """A gateway whose config file sits next to a copy of the demo articles."""
    kb = tmp_path / "kb"
    shutil.copytree(DEMO_KB, kb)
    path = tmp_path / "gateway.yaml"
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["knowledge_base"] = {"path": "kb/", "search_per_minute": 5}
    path.write_text(config_text(cfg))
    gw = Gateway(load_config(path))
    await gw.start()
    async with aiohttp.ClientSession() as http:
        yield gw, Client(f"http://127.0.0.1:{gw.port}", http), kb
    await gw.stop()


async def search(client: Client, token: str | None = None, **params: Any) -> tuple[int, Any]:
    return await client.call("GET", "/v1/kb/search", token=token, params=params)


async def test_search_finds_the_article_with_a_highlighted_snippet(
    started: tuple[Gateway, Client, Path],
) -> None:
    _, client, _ = started
    status, body = await search(client, q="Rechnung doppelt bezahlt", lang="de")
    assert status == 200, body
    top = body["items"][0]
    assert top["slug"] == "rueckerstattung" and top["url"] == "/help/de/rueckerstattung"
    assert "<mark>doppelt</mark>" in top["snippet_html"]
    status, body = await search(client, q="pasword reset", lang="en", limit="1")
    assert [i["slug"] for i in body["items"]] == ["password-reset"]


async def test_internal_articles_need_a_token_and_anonymous_search_is_limited(
    started: tuple[Gateway, Client, Path],
) -> None:
    _, client, _ = started
    _, body = await search(client, q="chargeback dispute", lang="en")
    assert "refund-disputes" not in [i["slug"] for i in body["items"]]
    status, body = await search(client, agent_token("alice"), q="chargeback dispute", lang="en")
    assert status == 200 and body["items"][0]["slug"] == "refund-disputes"
    assert body["items"][0]["url"] is None  # internal: no public page
    status, _ = await search(client, "not-a-token-at-all", q="refund")
    assert status == 401
    assert (await search(client, q="", lang="en"))[0] == 400
    assert (await search(client, q="refund", lang="fr"))[0] == 400
    # search_per_minute: 5 anonymous searches (two were spent above, the 400s too)
    codes = [(await search(client, q="refund"))[0] for _ in range(5)]
    assert codes[-1] == 429 and 200 in codes
    # a token is not limited; the help page's search shares the anonymous budget
    assert (await search(client, ADMIN, q="refund"))[0] == 200
    status, _ = await client.call("GET", "/help/en/", token=None, params={"q": "refund"})
    assert status == 429


async def test_help_pages_in_the_readers_language(started: tuple[Gateway, Client, Path]) -> None:
    _, client, _ = started
    async with client.http.get(
        client.base + "/help/", headers={"Accept-Language": "de-AT,de;q=0.9"}, allow_redirects=False
    ) as resp:
        assert resp.status == 302 and resp.headers["Location"] == "/help/de/"
    status, page = await client.call("GET", "/help/de/", token=None)
    assert status == 200 and "Hilfe-Center" in page and "Rechnungsadresse ändern" in page
    assert "Streitfälle" not in page  # internal articles are not listed
    # Sorted as a reader expects: Ö with O, not after Z.
    assert page.index("Öffnungszeiten") < page.index("Passwort zurücksetzen")
    status, page = await client.call("GET", "/help/en/", token=None, params={"q": "pasword"})
    assert "Search results" in page and "<mark>password</mark>" in page.lower()
    status, page = await client.call("GET", "/help/en/password-reset", token=None)
    assert status == 200 and "<strong>Forgot password</strong>" in page
    assert (await client.call("GET", "/help/en/refund-disputes", token=None))[0] == 404
    assert (await client.call("GET", "/help/fr/", token=None))[0] == 404


async def test_article_html_is_sanitised(started: tuple[Gateway, Client, Path]) -> None:
    gw, client, kb = started
    (kb / "en" / "evil.md").write_text(
        "---\ntitle: Evil <b>title</b>\n---\nHi <script>alert(1)</script>"
        ' <img src=x onerror="alert(2)"> [link](javascript:alert(3))\n'
    )
    assert (await gw.reload()).ok
    status, page = await client.call("GET", "/help/en/evil", token=None)
    assert status == 200
    assert "<script>alert" not in page and "onerror" not in page and "javascript:" not in page
    assert "Evil &lt;b&gt;title&lt;/b&gt;" in page


async def test_reload_takes_new_articles_and_refuses_broken_ones(
    started: tuple[Gateway, Client, Path],
) -> None:
    gw, client, kb = started
    (kb / "en" / "gift.md").write_text(
        "---\ntitle: Gift cards\nkeywords: [voucher]\n---\nGift cards never expire.\n"
    )
    result = await gw.reload()
    assert result.ok and "knowledge_base" in result.changed
    _, body = await search(client, ADMIN, q="voucher", lang="en")
    assert body["items"][0]["slug"] == "gift"
    (kb / "en" / "broken.md").write_text("---\ntitle: Broken\nlanguage: klingon\n---\nText\n")
    result = await gw.reload()
    assert not result.ok
    assert result.problems == [
        {"path": "kb/en/broken.md", "line": 3, "message": "unknown language 'klingon' (de or en)"}
    ]
    _, body = await search(client, ADMIN, q="voucher", lang="en")
    assert body["items"][0]["slug"] == "gift"  # the running articles stay
