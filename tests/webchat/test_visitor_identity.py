"""Issue 9: a chat visitor must not take over another customer's conversation.

A visitor who types a customer's email in the pre-chat form only *claims* it: it stays its
own contact, sees nothing of the customer's, and agent replies to the customer go to the
customer. A code mailed to the address proves it; only then are the two merged. Visitor
tokens expire after a while without use and only work on the site that got them. Spoken
over the widget's real WebSocket to a running gateway (an `api` channel delivering to a
real HTTP receiver, an email channel sending through a real SMTP server).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from connectors.base import Identity
from gateway.verification import CODE_TTL
from tests.gateway.conftest import CHANNEL as API_TOKEN
from tests.gateway.conftest import Receiver, agent_token, wait_for
from tests.webchat.conftest import Chat, Outgoing, TestClock, free_port, receive

MakeChat = Callable[..., Awaitable[Chat]]
DANA = "dana.smith@example.com"
DANA_WROTE = "Order 1001 never arrived, please refund it"
EARLIER_REPLY = "Sorry Dana, I am looking into order 1001"
REFUND = "Your refund code is RF-7731-QX"


async def frames_until(
    ws: aiohttp.ClientWebSocketResponse, done: Callable[[dict[str, Any]], bool], seen: list[Any]
) -> dict[str, Any]:
    """Read frames (keeping every one in `seen`) until one satisfies `done`."""
    while True:
        frame = await receive(ws, timeout=10)
        seen.append(frame)
        if done(frame):
            return frame


async def quiet_frames(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> list[Any]:
    """Every frame that arrives within `seconds`."""
    out: list[Any] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            break
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        out.append(json.loads(msg.data))
    return out


async def dana_writes(chat: Chat) -> tuple[str, str]:
    """Dana, a known customer, asks for a refund through the API channel; an agent answers.
    Returns her conversation and its assignee."""
    status, body = await chat.api.call(
        "POST",
        "/v1/channels/api/messages",
        token=API_TOKEN,
        json={"external_id": "crm-1", "text": DANA_WROTE, "from": {"email": DANA, "name": "Dana"}},
    )
    assert status == 202, body
    conv_id = body["conversation_id"]
    conv = await wait_for(lambda: chat.api.assigned(conv_id), timeout=10)
    status, _ = await chat.api.call(
        "POST",
        f"/v1/conversations/{conv_id}/messages",
        token=agent_token(conv["assignee"]),
        json={"text": EARLIER_REPLY},
    )
    assert status == 202
    return conv_id, conv["assignee"]


async def contact_of(chat: Chat, identity: str) -> dict[str, Any]:
    status, body = await chat.api.call("GET", "/v1/contacts", params={"identity": identity})
    assert status == 200, body
    contact: dict[str, Any] = body["contacts"][0]
    return contact


async def claim_dana(
    chat: Chat, language: str | None = None
) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any], str, list[Any]]:
    """A visitor types Dana's address in the pre-chat form and writes. Returns its socket,
    welcome, the conversation its message went to, and every frame it received."""
    ws = await chat.connect()
    await ws.send_json({"type": "hello", "token": None, "language": language})
    welcome = await receive(ws)
    seen: list[Any] = [welcome]
    await ws.send_json({"type": "profile", "name": "Dana", "email": DANA.upper()})
    await frames_until(ws, lambda f: f["type"] == "profile", seen)
    await ws.send_json({"type": "message", "client_id": "c1", "text": "Hi, it's me. My code?"})
    ack = await frames_until(ws, lambda f: f["type"] == "ack", seen)
    return ws, welcome, ack["conversation_id"], seen


async def test_a_claimed_email_gets_its_own_conversation_and_nothing_of_the_customer(
    make_chat: MakeChat, receiver: Receiver, outgoing: Outgoing
) -> None:
    chat = await make_chat(channels=[outgoing.channel()], outbound_url=receiver.url)
    dana_conv, assignee = await dana_writes(chat)
    await wait_for(lambda: len(receiver.requests) == 1)
    dana = await contact_of(chat, f"email:{DANA}")

    ws, welcome, visitor_conv, seen = await claim_dana(chat)

    # The visitor did not join Dana's conversation, and Dana's conversation is untouched.
    assert visitor_conv != dana_conv
    assert [(m["channel"], m["text"]) for m in await chat.messages(dana_conv)] == [
        ("api", DANA_WROTE),
        ("api", EARLIER_REPLY),
    ]
    # The agent answers Dana: it reaches Dana through her channel, never the visitor.
    status, _ = await chat.api.call(
        "POST",
        f"/v1/conversations/{dana_conv}/messages",
        token=agent_token(assignee),
        json={"text": REFUND},
    )
    assert status == 202
    await wait_for(lambda: len(receiver.requests) == 2)
    delivered = receiver.bodies()[1]
    assert delivered["text"] == REFUND
    assert delivered["to"] == {"kind": "email", "address": DANA}
    seen += await quiet_frames(ws, 1.0)
    # A reload shows the visitor its own message only.
    again, back = await chat.visitor(welcome["token"])
    seen.append(back)
    assert back["visitor_id"] == welcome["visitor_id"]
    assert [m["text"] for m in back["history"]] == ["Hi, it's me. My code?"]
    everything = json.dumps(seen)
    for secret in (REFUND, DANA_WROTE, EARLIER_REPLY, dana["id"], dana_conv):
        assert secret not in everything

    # Agents see a separate contact that claims Dana's address, unverified.
    visitor = await contact_of(chat, f"webchat:{welcome['visitor_id']}")
    assert visitor["id"] != dana["id"]
    assert visitor["identities"] == [
        {"kind": "webchat", "address": welcome["visitor_id"], "verified": True}
    ]
    assert visitor["claims"] == [{"kind": "email", "address": DANA, "verified": False}]
    dana_now = await contact_of(chat, f"email:{DANA}")
    assert dana_now["identities"] == dana["identities"]
    assert dana_now["claims"] == []
    _, page = await chat.api.call("GET", "/v1/conversations", params={"contact": dana["id"]})
    assert [c["id"] for c in page["conversations"]] == [dana_conv]
    await again.close()


async def test_the_mailed_code_merges_the_visitor_into_the_customer_and_can_be_undone(
    make_chat: MakeChat, receiver: Receiver, outgoing: Outgoing
) -> None:
    chat = await make_chat(channels=[outgoing.channel()], outbound_url=receiver.url)
    dana_conv, _ = await dana_writes(chat)
    dana = await contact_of(chat, f"email:{DANA}")
    ws, welcome, visitor_conv, seen = await claim_dana(chat, language="en-GB")
    sent = await frames_until(ws, lambda f: f["type"] == "verification", seen)
    assert sent == {"type": "verification", "status": "sent", "email": DANA, "attempts_left": 5}

    # The code goes out as an automatic mail to the claimed address, in English.
    await wait_for(lambda: outgoing.mails, timeout=10)
    [mail] = outgoing.mails
    assert mail.to == [DANA]
    assert mail.message["Subject"].startswith("Your verification code")
    assert mail.message["Auto-Submitted"] == "auto-replied"
    code = mail.code()
    # Nobody but the mailbox's owner reads it: not the agents, not the event stream.
    for m in await chat.messages(visitor_conv):
        assert code not in json.dumps(m)
    events = await chat.gw.store.events_since(0, 1000)
    assert all(code not in json.dumps(e.data) for e in events)

    await ws.send_json({"type": "verify", "code": code})
    done = await frames_until(ws, lambda f: f["type"] == "verification", seen)
    assert done == {"type": "verification", "status": "verified", "email": DANA}
    # One customer now: the visitor's identity and conversation belong to Dana.
    merged = await contact_of(chat, f"webchat:{welcome['visitor_id']}")
    assert merged["id"] == dana["id"]
    assert {(i["kind"], i["address"], i["verified"]) for i in merged["identities"]} == {
        ("email", DANA, True),
        ("webchat", welcome["visitor_id"], True),
    }
    assert merged["claims"] == []
    _, page = await chat.api.call("GET", "/v1/conversations", params={"contact": dana["id"]})
    assert {c["id"] for c in page["conversations"]} == {dana_conv, visitor_conv}
    [event] = [e for e in await chat.gw.store.events_since(0, 1000) if e.type == "contact.merged"]
    visitor_contact = event.data["merged_contact_id"]
    assert event.data["contact_id"] == dana["id"] and visitor_contact != dana["id"]
    assert event.data["conversations"] == [visitor_conv]
    # The code was single use.
    visitor_id = Identity("webchat", welcome["visitor_id"])
    again = await chat.gw.verifier.confirm("webchat", visitor_id, code)
    assert again.status == "none"

    # An admin can undo the merge; an agent cannot.
    status, _ = await chat.api.call(
        "POST", f"/v1/contacts/{visitor_contact}/unmerge", token=agent_token("alice")
    )
    assert status == 403
    status, body = await chat.api.call("POST", f"/v1/contacts/{visitor_contact}/unmerge")
    assert status == 200, body
    assert body["merged_into"] is None
    assert body["claims"] == [{"kind": "email", "address": DANA, "verified": False}]
    assert (await contact_of(chat, f"webchat:{welcome['visitor_id']}"))["id"] == visitor_contact
    _, page = await chat.api.call("GET", "/v1/conversations", params={"contact": dana["id"]})
    assert [c["id"] for c in page["conversations"]] == [dana_conv]
    status, body = await chat.api.call("POST", f"/v1/contacts/{visitor_contact}/unmerge")
    assert status == 409, body


async def test_five_wrong_codes_lock_and_an_expired_code_fails(
    make_chat: MakeChat, outgoing: Outgoing
) -> None:
    clock = TestClock()
    chat = await make_chat(channels=[outgoing.channel()], clock=clock)
    await dana_writes(chat)
    dana = await contact_of(chat, f"email:{DANA}")

    ws, welcome, _, seen = await claim_dana(chat, language="de-DE")
    await frames_until(ws, lambda f: f["type"] == "verification", seen)
    await wait_for(lambda: outgoing.mails, timeout=10)
    mail = outgoing.mails[0]
    assert mail.message["Subject"].startswith("Ihr Bestätigungscode")  # the browser language
    assert "Ihr Bestätigungscode" in mail.text
    right = mail.code()
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    answers = []
    for _ in range(5):
        await ws.send_json({"type": "verify", "code": wrong})
        answers.append(await frames_until(ws, lambda f: f["type"] == "verification", seen))
    assert [a.get("attempts_left") for a in answers[:4]] == [4, 3, 2, 1]
    assert [a["status"] for a in answers] == ["wrong_code"] * 4 + ["locked"]
    # Locked: even the right code no longer works, and no new code is sent.
    await ws.send_json({"type": "verify", "code": right})
    assert (await frames_until(ws, lambda f: f["type"] in ("verification", "error"), seen))[
        "status"
    ] == "locked"
    await ws.send_json({"type": "verify_resend"})
    assert (await frames_until(ws, lambda f: f["type"] == "verification", seen))[
        "status"
    ] == "locked"
    assert len(outgoing.mails) == 1
    assert (await contact_of(chat, f"webchat:{welcome['visitor_id']}"))["id"] != dana["id"]

    # Another visitor gets a code, but types it too late.
    ws2, welcome2, _, seen2 = await claim_dana(chat)
    await frames_until(ws2, lambda f: f["type"] == "verification", seen2)
    await wait_for(lambda: len(outgoing.mails) == 2, timeout=10)
    clock.advance(CODE_TTL + 1)
    await ws2.send_json({"type": "verify", "code": outgoing.mails[1].code()})
    late = await frames_until(ws2, lambda f: f["type"] == "verification", seen2)
    assert late["status"] == "expired"
    assert (await contact_of(chat, f"webchat:{welcome2['visitor_id']}"))["id"] != dana["id"]
    assert all(e.type != "contact.merged" for e in await chat.gw.store.events_since(0, 1000))


async def test_without_an_email_channel_a_typed_address_stays_a_claim(chat: Chat) -> None:
    await dana_writes(chat)
    dana = await contact_of(chat, f"email:{DANA}")
    ws, welcome, _, seen = await claim_dana(chat)
    answer = await frames_until(ws, lambda f: f["type"] == "verification", seen)
    assert answer == {"type": "verification", "status": "unavailable", "email": DANA}
    # Asked once by itself, not on every message; a reload asks for no code.
    await ws.send_json({"type": "message", "client_id": "c2", "text": "again"})
    await frames_until(ws, lambda f: f["type"] == "ack", seen)
    assert [f for f in await quiet_frames(ws, 0.5) if f["type"] == "verification"] == []
    _, back = await chat.visitor(welcome["token"])
    assert back["verification"] == {"status": "unverified", "email": DANA}
    visitor = await contact_of(chat, f"webchat:{welcome['visitor_id']}")
    assert visitor["id"] != dana["id"]
    assert visitor["claims"] == [{"kind": "email", "address": DANA, "verified": False}]


async def test_verify_via_picks_the_email_channel_that_mails_the_code(
    make_chat: MakeChat, outgoing: Outgoing
) -> None:
    sales = {**outgoing.channel(), "name": "sales", "address": "sales@shop.test"}
    sales["smtp"] = {**sales["smtp"], "port": free_port()}  # nobody listens there
    chat = await make_chat(channels=[sales, outgoing.channel()], verify_via="mail")
    ws, _, conv_id, seen = await claim_dana(chat)
    sent = await frames_until(ws, lambda f: f["type"] == "verification", seen)
    assert sent["status"] == "sent"
    await wait_for(lambda: outgoing.mails, timeout=10)
    assert outgoing.mails[0].to == [DANA]
    [code_mail] = [m for m in await chat.messages(conv_id) if m["direction"] == "out"]
    assert code_mail["channel"] == "mail"


async def test_verify_via_naming_no_email_channel_sends_nothing(make_chat: MakeChat) -> None:
    chat = await make_chat(verify_via="sales")
    ws, _, _, seen = await claim_dana(chat)
    answer = await frames_until(ws, lambda f: f["type"] == "verification", seen)
    assert answer["status"] == "unavailable"


async def test_an_expired_token_and_a_token_from_another_site_are_refused(
    make_chat: MakeChat,
) -> None:
    clock = TestClock()
    # Any site may embed this chat; a token still only works on the site that got it.
    chat = await make_chat(clock=clock, token_ttl="1h", allowed_origins=["*"])
    other = "http://other-shop.test"

    ws, first = await chat.visitor()
    await ws.send_json({"type": "message", "client_id": "m1", "text": "only mine"})
    assert (await receive(ws))["type"] == "ack"
    await ws.close()
    token = first["token"]

    # Another site that embeds the same chat cannot use the token.
    foreign = await chat.connect(origin=other)
    await foreign.send_json({"type": "hello", "token": token})
    refused = await receive(foreign)
    assert refused["renewed"] is True and refused["renewed_reason"] == "origin"
    assert refused["visitor_id"] != first["visitor_id"] and refused["history"] == []
    # ... while the site that got it can, and each use renews it (sliding expiry).
    clock.advance(50 * 60)
    _, used = await chat.visitor(token)
    assert used["visitor_id"] == first["visitor_id"] and used["renewed"] is False
    assert [m["text"] for m in used["history"]] == ["only mine"]
    renewed = used["token"]
    assert renewed != token
    clock.advance(50 * 60)  # 100 min after the first use, 50 after the last
    _, stale = await chat.visitor(token)
    assert stale["renewed"] is True and stale["renewed_reason"] == "expired"
    assert stale["visitor_id"] != first["visitor_id"] and stale["history"] == []
    _, fresh = await chat.visitor(renewed)
    assert fresh["visitor_id"] == first["visitor_id"] and fresh["renewed"] is False
    clock.advance(61 * 60)
    _, expired = await chat.visitor(fresh["token"])
    assert expired["renewed_reason"] == "expired" and expired["history"] == []
