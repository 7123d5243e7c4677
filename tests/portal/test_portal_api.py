"""The customer portal through HTTP, on both stores: links issued, sent and revoked; the page a
customer sees; answers that join their conversation."""

from __future__ import annotations

import html
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from gateway.app import Gateway
from gateway.i18n import Texts
from tests.gateway.conftest import Client, Receiver, agent_token, base_config, wait_for
from tests.portal.conftest import OnBackend
from tests.surveys.helpers import Clock, fire, surveys


def _config(tmp_path: Path, on_backend: OnBackend, **portal: Any) -> dict[str, Any]:
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["portal"] = {"enabled": True, **portal}
    return on_backend(cfg)


async def _conversation(client: Client, ext: str, text: str, sender: str = "cust-1") -> str:
    status, body = await client.inbound(ext, text, sender=sender)
    assert status in (200, 201, 202), body
    return str(body["conversation_id"])


async def _contact_of(client: Client, conv_id: str) -> str:
    return str((await client.conversation(conv_id))["contact_id"])


async def _link(client: Client, contact_id: str, token: str | None = None) -> str:
    kw: dict[str, Any] = {} if token is None else {"token": token}
    status, body = await client.call("POST", f"/v1/contacts/{contact_id}/portal-link", **kw)
    assert status == 201, body
    return str(body["url"])


async def _page(url: str, **headers: str) -> tuple[int, str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(url, headers=headers, allow_redirects=False) as resp,
    ):
        return resp.status, await resp.text(), resp.headers


def _form(page: str, conv_id: str) -> tuple[str, str]:
    """The action and the form token of the reply form of one conversation."""
    section = page[page.index(f'id="c-{conv_id}"') :]
    section = section[: section.index("</section>")]
    action = re.search(r'<form method="post" action="([^"]+)"', section)
    token = re.search(r'name="form" value="([^"]+)"', section)
    assert action and token, section
    return html.unescape(action.group(1)), html.unescape(token.group(1))


async def _answer(
    base: str, action: str, form: str, text: str, origin: str | None = None
) -> tuple[int, str, str | None]:
    headers = {"Origin": origin or base}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            base + action,
            data={"text": text, "form": form},
            headers=headers,
            allow_redirects=False,
        ) as resp,
    ):
        return resp.status, await resp.text(), resp.headers.get("Location")


def _inbound_texts(conv: dict[str, Any]) -> list[str]:
    return [m["text"] for m in conv["messages"] if m["direction"] == "in"]


async def test_the_portal_is_off_unless_enabled(
    gateway_factory: Any, tmp_path: Path, on_backend: OnBackend
) -> None:
    _, client = await gateway_factory(on_backend(base_config(tmp_path / "db.sqlite")))
    conv = await _conversation(client, "m1", "Hello")
    contact = await _contact_of(client, conv)
    status, body = await client.call("POST", f"/v1/contacts/{contact}/portal-link")
    assert status == 409 and body["error"]["code"] == "portal_disabled"
    status, _, _ = await _page(client.base + "/portal/anything")
    assert status == 404


async def test_a_customer_sees_its_requests_and_answers_one(
    gateway_factory: Any, tmp_path: Path, on_backend: OnBackend
) -> None:
    gw: Gateway
    gw, client = await gateway_factory(_config(tmp_path, on_backend))
    conv = await _conversation(client, "m1", "My parcel never arrived")
    contact = await _contact_of(client, conv)
    status, _ = await client.call(
        "POST", f"/v1/conversations/{conv}/notes", json={"text": "SECRET internal remark"}
    )
    assert status == 201
    status, _ = await client.call(
        "POST", f"/v1/conversations/{conv}/messages", json={"text": "We are looking into it"}
    )
    assert status == 202
    # Someone else's request is not in this customer's portal.
    await _conversation(client, "m2", "Another customer's problem", sender="cust-2")

    url = await _link(client, contact)
    assert url.startswith(gw.public_url() + "/portal/")
    status, page, headers = await _page(url, **{"Accept-Language": "en-GB,en;q=0.8"})
    assert status == 200
    assert "Your requests" in page
    assert "My parcel never arrived" in page and "We are looking into it" in page
    assert "SECRET internal remark" not in page
    assert "Another customer" not in page
    # The agent answered: the request waits for the customer.
    assert 'data-status="waiting"' in page and "Waiting for your answer" in page
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-store"

    events_before = await gw.store.events_since(0, 10_000)
    action, form = _form(page, conv)
    status, _, location = await _answer(client.base, action, form, "It is <b>still</b> missing")
    assert status == 303 and location is not None and f"c={conv}" in location
    # A second submission of the same form (a double click, a reload) is the same answer.
    status, _, _ = await _answer(client.base, action, form, "It is <b>still</b> missing")
    assert status == 303
    after = await client.conversation(conv)
    assert _inbound_texts(after).count("It is <b>still</b> missing") == 1
    received = [
        e
        for e in await gw.store.events_since(0, 10_000)
        if e.type == "message.received" and e not in events_before
    ]
    assert any(e.data["conversation_id"] == conv for e in received)
    # The answer goes out as the customer's message on the conversation's channel.
    last_in = [m for m in after["messages"] if m["direction"] == "in"][-1]
    assert last_in["channel"] == "api" and last_in["via"] == "portal"

    status, page, _ = await _page(client.base + location)
    assert "Thank you, your answer has been added to this request." in page
    # The customer's own markup is shown as text, never as markup.
    assert "It is &lt;b&gt;still&lt;/b&gt; missing" in page


async def test_a_forged_cross_site_or_stale_post_is_refused(
    gateway_factory: Any, tmp_path: Path, on_backend: OnBackend
) -> None:
    _, client = await gateway_factory(
        _config(tmp_path, on_backend, max_reply_chars=50, answers_per_hour=1)
    )
    conv = await _conversation(client, "m1", "Hello")
    url = await _link(client, await _contact_of(client, conv))
    _, page, _ = await _page(url)
    action, form = _form(page, conv)
    status, _, _ = await _answer(client.base, action, form, "from evil", "https://evil.example")
    assert status == 403
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            client.base + action,
            data={"text": "from evil", "form": form},
            headers={"Sec-Fetch-Site": "cross-site", "Origin": "null"},
            allow_redirects=False,
        ) as resp,
    ):
        assert resp.status == 403
    status, body, _ = await _answer(client.base, action, form[:-2] + "xx", "forged form")
    assert status == 403 and "out of date" in body
    status, body, _ = await _answer(client.base, action, form[:-2] + "äö", "forged form")
    assert status == 403 and "out of date" in body
    status, body, _ = await _answer(client.base, action, form, "x" * 51)
    assert status == 413 and "at most 50 characters" in body
    status, body, _ = await _answer(client.base, action, form, "   ")
    assert status == 422
    texts = _inbound_texts(await client.conversation(conv))
    assert texts == ["Hello"]
    # One answer an hour here: the second is refused, and says when to try again.
    status, _, _ = await _answer(client.base, action, form, "first answer")
    assert status == 303
    _, page, _ = await _page(url)
    action, form = _form(page, conv)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            client.base + action,
            data={"text": "second answer", "form": form},
            allow_redirects=False,
        ) as resp,
    ):
        assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
        assert "Please wait a little" in await resp.text()
    assert _inbound_texts(await client.conversation(conv)) == ["Hello", "first answer"]


async def test_an_answer_reopens_a_resolved_request(
    gateway_factory: Any, tmp_path: Path, on_backend: OnBackend
) -> None:
    clock = Clock()
    cfg = _config(tmp_path, on_backend)
    cfg["conversations"] = {"reopen_window": "1h"}
    _, client = await gateway_factory(cfg, clock=clock)
    conv = await _conversation(client, "m1", "Refund please")
    status, _ = await client.call("POST", f"/v1/conversations/{conv}/resolve")
    assert status == 200
    clock.advance(3 * 86400)  # long after the reopen window: the customer chose it anyway
    url = await _link(client, await _contact_of(client, conv))
    _, page, _ = await _page(url)
    assert 'data-status="resolved"' in page and "reopens this request" in page
    action, form = _form(page, conv)
    status, _, _ = await _answer(client.base, action, form, "Not refunded yet")
    assert status == 303
    after = await client.conversation(conv)
    assert after["status"] in ("open", "assigned")
    assert _inbound_texts(after)[-1] == "Not refunded yet"


async def test_revoked_expired_and_tampered_links(
    gateway_factory: Any, tmp_path: Path, on_backend: OnBackend
) -> None:
    clock = Clock()
    _, client = await gateway_factory(_config(tmp_path, on_backend, link_ttl="2d"), clock=clock)
    conv = await _conversation(client, "m1", "Private matter")
    contact = await _contact_of(client, conv)
    url = await _link(client, contact)
    status, page, _ = await _page(url)
    assert status == 200

    _, rest = url.rsplit("/", 1)[1].split(".", 1)
    tampered = url.rsplit("/", 1)[0] + "/ct_other." + rest
    status, page, _ = await _page(tampered, **{"Accept-Language": "de-DE"})
    assert status == 403 and "Dieser Link ist ungültig." in page
    assert "Private matter" not in page

    status, body = await client.call("DELETE", f"/v1/contacts/{contact}/portal-link")
    assert status == 200 and body == {"contact_id": contact, "revoked": True}
    status, page, _ = await _page(url)
    assert status == 410 and "Private matter" not in page
    # A new link works again; it expires after link_ttl.
    fresh = await _link(client, contact)
    assert (await _page(fresh))[0] == 200
    clock.advance(2 * 86400 + 1)
    status, page, _ = await _page(fresh)
    assert status == 410 and "expired" in page


async def test_agents_issue_links_only_for_contacts_they_see_and_can_send_one(
    gateway_factory: Any, tmp_path: Path, on_backend: OnBackend
) -> None:
    cfg = _config(tmp_path, on_backend, timezone="Europe/Berlin")
    cfg["auth"]["visibility"] = "assigned"  # an agent sees the conversations it holds
    _, client = await gateway_factory(cfg)
    conv = await _conversation(client, "m1", "Hello there")
    contact = await _contact_of(client, conv)
    conv_data = await wait_for(lambda: client.assigned(conv))
    owner = conv_data["assignee"]
    stranger = "carol" if owner != "carol" else "bob"
    status, _ = await client.call(
        "POST", f"/v1/contacts/{contact}/portal-link", token=agent_token(stranger)
    )
    assert status == 404
    assert await _link(client, contact, token=agent_token(owner))

    # German customer: the link goes into the conversation in German.
    status, _ = await client.call(
        "PATCH", f"/v1/contacts/{contact}", json={"attributes": {"language": "de"}}
    )
    assert status == 200
    status, body = await client.call(
        "POST", f"/v1/conversations/{conv}/portal-link", token=agent_token(owner)
    )
    assert status == 202, body
    assert body["message"]["text"].startswith("Hier sehen Sie alle Ihre Anfragen")
    assert body["url"] in body["message"]["text"]
    after = await client.conversation(conv)
    sent = after["messages"][-1]
    assert sent["direction"] == "out" and body["url"] in sent["text"]
    # A service message, not the agent's answer: no first response, the status unchanged.
    assert sent["sender"]["type"] == "system"
    assert after["first_response_at"] is None and after["status"] == conv_data["status"]
    status, page, _ = await _page(body["url"])
    assert status == 200 and "Ihre Anfragen" in page and 'lang="de"' in page
    # Times as the customer's clock shows them (portal.timezone), in its language.
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00")).timestamp()
    assert Texts.datetime(expires, "de", "Europe/Berlin") in page


async def test_merged_contacts_share_one_portal(
    gateway_factory: Any, tmp_path: Path, on_backend: OnBackend
) -> None:
    _, client = await gateway_factory(_config(tmp_path, on_backend))
    first = await _conversation(client, "m1", "Question from my phone", sender="phone-1")
    second = await _conversation(client, "m2", "Question from my laptop", sender="laptop-1")
    holder, other = await _contact_of(client, first), await _contact_of(client, second)
    old_link = await _link(client, other)  # given out before the merge
    status, body = await client.call("POST", f"/v1/contacts/{holder}/merge", json={"other": other})
    assert status == 200, body
    for url in (await _link(client, holder), old_link):
        _, page, _ = await _page(url)
        assert "Question from my phone" in page and "Question from my laptop" in page
    # Revoking the holder's links revokes those of the contact merged into it.
    status, _ = await client.call("DELETE", f"/v1/contacts/{holder}/portal-link")
    assert status == 200
    assert (await _page(old_link))[0] == 410
    # Revoking through the merged contact revokes the holder's links too: they show the
    # same conversations.
    fresh = await _link(client, holder)
    status, body = await client.call("DELETE", f"/v1/contacts/{other}/portal-link")
    assert status == 200 and body["contact_id"] == holder
    assert (await _page(fresh))[0] == 410


async def test_an_answer_in_the_portal_is_never_taken_as_a_survey_score(
    gateway_factory: Any, tmp_path: Path, on_backend: OnBackend, receiver: Receiver
) -> None:
    clock = Clock()
    cfg = on_backend(base_config(tmp_path / "db.sqlite", receiver.url))
    cfg["portal"] = {"enabled": True}
    cfg["surveys"] = {"delay": "10m"}
    gw, client = await gateway_factory(cfg, clock=clock)
    conv = await _conversation(client, "m1", "The app crashes")
    status, _ = await client.call("POST", f"/v1/conversations/{conv}/resolve")
    assert status == 200
    await fire(gw, clock, 3600)
    await wait_for(lambda: any("satisfied" in str(b.get("text")) for b in receiver.bodies()))
    url = await _link(client, await _contact_of(client, conv))
    _, page, _ = await _page(url)
    action, form = _form(page, conv)
    # "5" typed on the channel would answer the open survey; in the portal it is a message.
    status, _, _ = await _answer(client.base, action, form, "5")
    assert status == 303
    after = await client.conversation(conv)
    assert _inbound_texts(after)[-1] == "5" and after["status"] in ("open", "assigned")
    [asked] = await surveys(client, conversation_id=conv)
    assert asked["score"] is None


async def test_an_agent_gets_no_link_that_would_show_conversations_it_does_not_see(
    gateway_factory: Any, tmp_path: Path, on_backend: OnBackend
) -> None:
    """A link shows every conversation of the contact: an agent who sees only one of them
    may neither issue nor send one (else it would read the others through the link)."""
    cfg = _config(tmp_path, on_backend)
    cfg["auth"]["visibility"] = "assigned"  # an agent sees the conversations it holds
    _, client = await gateway_factory(cfg)
    first = await _conversation(client, "s1", "About my invoice")
    contact = await _contact_of(client, first)
    owner = (await wait_for(lambda: client.assigned(first)))["assignee"]
    other = "carol" if owner != "carol" else "bob"
    status, body = await client.call("POST", f"/v1/conversations/{first}/resolve")
    assert status == 200, body
    # A second request of the same customer, started for another agent.
    status, body = await client.call(
        "POST",
        "/v1/conversations",
        json={
            "channel": "api",
            "contact_id": contact,
            "text": "About your contract",
            "assign_to": other,
        },
    )
    assert status == 201, body

    status, body = await client.call(
        "POST", f"/v1/contacts/{contact}/portal-link", token=agent_token(owner)
    )
    assert status == 403 and body["error"]["code"] == "portal_scope", body
    status, body = await client.call(
        "POST", f"/v1/conversations/{first}/portal-link", token=agent_token(owner)
    )
    assert status == 403 and body["error"]["code"] == "portal_scope", body
    assert all(
        m["direction"] == "in" or "portal" not in m["text"]
        for m in (await client.conversation(first))["messages"]
    )
    # Whoever sees both may: the link shows both.
    url = await _link(client, contact)
    status, page, _ = await _page(url)
    assert status == 200 and "About my invoice" in page and "About your contract" in page
