"""Proactive outreach through the whole gateway on SMS (the Twilio stand-in), WhatsApp
templates, routing of an unassigned start, and every refusal — on both stores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.gateway.conftest import (
    ADMIN,
    Client,
    agent_token,
    base_config,
    wait_for,
)
from tests.standins.server import free_port
from tests.standins.telegram import TelegramStandin
from tests.standins.twilio import CHANNEL_NUMBER, CUSTOMER_NUMBER, WHATSAPP_NUMBER, TwilioStandin

SMS_INBOUND = "/channels/sms/twilio/inbound"
TEMPLATE_SID = "HX" + "0123456789abcdef" * 2


def config(
    tmp_path: Path,
    store_cfg: dict[str, Any] | None,
    twilio: TwilioStandin,
    telegram: TelegramStandin | None = None,
) -> dict[str, Any]:
    port = free_port()
    cfg = base_config(tmp_path / "db.sqlite")
    if store_cfg is not None:
        cfg["store"] = store_cfg
    cfg["server"]["port"] = port
    common = {
        "account_sid": twilio.account_sid,
        "auth_token": twilio.auth_token,
        "api_base_url": twilio.url,
        "webhook_base_url": f"http://127.0.0.1:{port}",
        "request_timeout": 3,
    }
    cfg["channels"] += [
        {"name": "sms", "type": "twilio_sms", "from_number": CHANNEL_NUMBER, **common},
        {"name": "wa", "type": "twilio_whatsapp", "from_number": WHATSAPP_NUMBER, **common},
        {
            "name": "webchat",
            "type": "webchat",
            "secret": "test-webchat-secret-0123456789",
            "allowed_origins": ["*"],
        },
    ]
    if telegram is not None:
        cfg["channels"].append(
            {
                "name": "tg",
                "type": "telegram",
                "token": telegram.token,
                "api_base_url": telegram.url,
                "poll_timeout": 1,
                "request_timeout": 3,
            }
        )
    return cfg


async def start_conv(
    client: Client, token: str | None = ADMIN, **body: Any
) -> tuple[int, dict[str, Any]]:
    status, out = await client.call("POST", "/v1/conversations", token=token, json=body)
    return status, out


async def message_status(client: Client, conv_id: str, msg_id: str, *wanted: str) -> Any:
    conv = await client.conversation(conv_id)
    msg = next(m for m in conv["messages"] if m["id"] == msg_id)
    return msg if msg["status"] in wanted else None


async def test_agent_texts_first_and_the_answer_joins(
    gateway_factory: Any, tmp_path: Path, twilio: TwilioStandin, store_cfg: Any
) -> None:
    _, client = await gateway_factory(config(tmp_path, store_cfg, twilio))
    status, conv = await start_conv(
        client,
        agent_token("bob"),
        channel="sms",
        to={"address": "+1 415 555 0123", "name": "Dana"},
        text="Hi Dana, your repair is ready for pick-up.",
    )
    assert status == 201, conv
    assert conv["assignee"] == "bob" and conv["channel"] == "sms"
    assert conv["status"] == "pending"  # the customer's turn
    assert conv["routing"]["reasons"][0] == "started by bob (proactive outreach)"
    [first] = conv["messages"]
    assert first["direction"] == "out" and first["status"] == "queued"
    assert first["sender"] == {"type": "agent", "id": "bob"}

    # Out through the outbox to Twilio, to the number in E.164, and marked sent.
    await wait_for(lambda: twilio.messages)
    form = twilio.messages[0]["_request"]
    assert form["To"] == CUSTOMER_NUMBER and form["From"] == CHANNEL_NUMBER
    assert form["Body"] == "Hi Dana, your repair is ready for pick-up."
    sent = await wait_for(lambda: message_status(client, conv["id"], first["id"], "sent"))
    assert sent["provider_message_id"] == twilio.messages[0]["sid"]
    status, contact = await client.call("GET", f"/v1/contacts/{conv['contact_id']}")
    assert contact["name"] == "Dana"
    assert contact["identities"][0]["address"] == CUSTOMER_NUMBER

    # The customer answers by SMS: the same conversation, back with bob.
    params = twilio.inbound_params(CUSTOMER_NUMBER, CHANNEL_NUMBER, "Great, coming at 5")
    hook = await twilio.post_webhook(client.http, client.base + SMS_INBOUND, params)
    assert hook[0] == 200
    convs = await client.conversations_of(f"phone:{CUSTOMER_NUMBER}")
    assert [c["id"] for c in convs] == [conv["id"]]
    after = await client.conversation(conv["id"])
    assert [m["direction"] for m in after["messages"]] == ["out", "in"]
    assert after["messages"][1]["text"] == "Great, coming at 5"
    assert after["status"] == "assigned" and after["assignee"] == "bob"

    # The KPIs: nobody waited for a first response (we wrote first); bob's answer to the
    # customer's reply is a next response.
    status, _ = await client.call(
        "POST",
        f"/v1/conversations/{conv['id']}/messages",
        token=agent_token("bob"),
        json={"text": "See you then!"},
    )
    assert status == 202

    async def totals() -> dict[str, Any] | None:
        status, body = await client.call("GET", "/v1/stats")
        assert status == 200, body
        tot: dict[str, Any] = body["totals"]
        return tot if tot["next_response"]["count"] == 1 else None

    tot = await wait_for(totals, timeout=10)
    assert tot["first_response"]["count"] == 0

    # A second start while that conversation is active points at it.
    for token in (ADMIN, agent_token("bob")):
        status, err = await start_conv(
            client, token, channel="sms", contact_id=conv["contact_id"], text="another"
        )
        assert status == 409, err
        assert err["error"]["code"] == "conversation_exists"
        assert conv["id"] in err["error"]["message"]


async def test_unassigned_start_is_routed_by_the_rules(
    gateway_factory: Any, tmp_path: Path, twilio: TwilioStandin, store_cfg: Any
) -> None:
    _, client = await gateway_factory(config(tmp_path, store_cfg, twilio))
    # The integration token names no agent: routed, and the billing rule sends it to billing.
    status, conv = await start_conv(
        client,
        "test-integration-token",
        channel="sms",
        to={"address": CUSTOMER_NUMBER},
        text="About your invoice 42: it is now paid.",
    )
    assert status == 201, conv
    assert conv["assignee"] is None and conv["queue"] == "billing"
    routed = await wait_for(lambda: client.assigned(conv["id"]))
    assert routed["assignee"] == "alice"  # billing skills, online
    # An agent may leave it to routing too (`assign_to: null`), in a queue of its own.
    status, other = await start_conv(
        client,
        agent_token("alice"),
        channel="sms",
        to={"address": "+14155550199"},
        text="Hello",
        assign_to=None,
        queue="billing",
    )
    assert status == 201, other
    assert other["queue"] == "billing"
    # `to.channel` may name the kind of channel, as people write it.
    status, third = await start_conv(
        client, channel="sms", to={"channel": "sms", "address": "+14155550177"}, text="Hi"
    )
    assert status == 201, third
    assert "queue billing chosen by alice" in other["routing"]["reasons"]
    await wait_for(lambda: client.assigned(other["id"]))


async def test_whatsapp_starts_only_with_a_template(
    gateway_factory: Any, tmp_path: Path, twilio: TwilioStandin, store_cfg: Any
) -> None:
    _, client = await gateway_factory(config(tmp_path, store_cfg, twilio))
    status, err = await start_conv(
        client, channel="wa", to={"address": CUSTOMER_NUMBER}, text="Hi there"
    )
    assert status == 422 and err["error"]["code"] == "template_required", err
    assert not twilio.messages
    status, conv = await start_conv(
        client,
        channel="wa",
        to={"address": CUSTOMER_NUMBER},
        text="Your order 42 has shipped.",
        template={"sid": TEMPLATE_SID, "variables": {"1": "42"}},
        assign_to="alice",
    )
    assert status == 201, conv
    await wait_for(lambda: twilio.messages)
    form = twilio.messages[0]["_request"]
    assert form["To"] == f"whatsapp:{CUSTOMER_NUMBER}"
    assert form["ContentSid"] == TEMPLATE_SID
    assert form["ContentVariables"] == '{"1": "42"}'
    assert "Body" not in form
    await wait_for(lambda: message_status(client, conv["id"], conv["messages"][0]["id"], "sent"))


async def test_refusals_are_precise(
    gateway_factory: Any,
    tmp_path: Path,
    twilio: TwilioStandin,
    telegram: TelegramStandin,
    store_cfg: Any,
) -> None:
    _, client = await gateway_factory(config(tmp_path, store_cfg, twilio, telegram))

    async def refused(
        status_wanted: int, code: str, token: str | None = ADMIN, **body: Any
    ) -> None:
        status, err = await start_conv(client, token, **body)
        assert (status, err["error"]["code"]) == (status_wanted, code), err

    text = {"text": "Hello"}
    await refused(422, "unknown_channel", channel="fax", to={"address": "1"}, **text)
    await refused(422, "channel_cannot_start", channel="webchat", to={"address": "v1"}, **text)
    # Telegram: the bot cannot write to a user who never wrote to it.
    await refused(422, "never_wrote", channel="tg", to={"address": "5550001"}, **text)
    await refused(422, "invalid_address", channel="sms", to={"address": "not a number"}, **text)
    await refused(
        422, "wrong_address_kind", channel="sms", to={"address": "a@b.c", "kind": "email"}, **text
    )
    await refused(
        422,
        "wrong_address_kind",
        channel="sms",
        to={"address": "a@b.c", "channel": "email"},
        **text,
    )
    await refused(
        422,
        "template_not_supported",
        channel="sms",
        to={"address": CUSTOMER_NUMBER},
        template={"sid": TEMPLATE_SID},
        **text,
    )
    await refused(422, "unknown_contact", channel="sms", contact_id="ct_nobody", **text)
    await refused(422, "validation_error", channel="sms", **text)  # neither contact nor to
    await refused(
        422,
        "unknown_agent",
        channel="sms",
        to={"address": CUSTOMER_NUMBER},
        assign_to="zed",
        **text,
    )
    await refused(
        422, "unknown_queue", channel="sms", to={"address": CUSTOMER_NUMBER}, queue="nope", **text
    )
    await refused(
        403,
        "forbidden",
        agent_token("bob"),
        channel="sms",
        to={"address": CUSTOMER_NUMBER},
        assign_to="alice",
        **text,
    )

    # A contact known by the api channel only has no phone number to text.
    status, _ = await client.inbound("e1", "hi", sender="cust-9")
    assert status in (200, 201, 202)
    status, found = await client.call("GET", "/v1/contacts", params={"identity": "api:cust-9"})
    contact_id = found["contacts"][0]["id"]
    await refused(422, "no_address", channel="sms", contact_id=contact_id, **text)
    # A contact who asked not to be contacted first.
    status, _ = await client.call(
        "PATCH", f"/v1/contacts/{contact_id}", json={"attributes": {"do_not_contact": "true"}}
    )
    assert status == 200
    await refused(422, "opted_out", channel="api", contact_id=contact_id, **text)
    # Nothing above reached a provider, and no conversation was opened.
    assert not twilio.messages
    status, page = await client.call("GET", "/v1/conversations?limit=50")
    assert len(page["conversations"]) == 1  # cust-9's own inbound one


async def test_telegram_starts_only_after_the_user_wrote(
    gateway_factory: Any,
    tmp_path: Path,
    twilio: TwilioStandin,
    telegram: TelegramStandin,
    store_cfg: Any,
) -> None:
    _, client = await gateway_factory(config(tmp_path, store_cfg, twilio, telegram))
    telegram.push_message(telegram.user(5550001), "Where is my parcel?")
    [old] = await wait_for(lambda: client.conversations_of("telegram:5550001"), timeout=10)
    status, _ = await client.call("POST", f"/v1/conversations/{old['id']}/resolve")
    assert status == 200
    contact_id = old["contact_id"]
    status, conv = await start_conv(
        client,
        agent_token("alice"),
        channel="tg",
        contact_id=contact_id,
        text="Your parcel arrived at the pick-up point.",
    )
    assert status == 201, conv
    assert conv["id"] != old["id"] and conv["assignee"] == "alice"
    await wait_for(lambda: telegram.sent)
    assert telegram.sent[0]["chat"]["id"] == 5550001
    assert telegram.sent[0]["text"] == "Your parcel arrived at the pick-up point."
    # Another user of the same bot who never wrote: refused.
    status, err = await start_conv(client, channel="tg", to={"address": "5550002"}, text="Hi")
    assert (status, err["error"]["code"]) == (422, "never_wrote"), err


async def test_a_customer_who_texts_stop_is_not_contacted_first(
    gateway_factory: Any, tmp_path: Path, twilio: TwilioStandin, store_cfg: Any
) -> None:
    _, client = await gateway_factory(config(tmp_path, store_cfg, twilio))

    async def text(body: str) -> None:
        params = twilio.inbound_params(CUSTOMER_NUMBER, CHANNEL_NUMBER, body)
        status, _, _ = await twilio.post_webhook(client.http, client.base + SMS_INBOUND, params)
        assert status == 200

    await text("Where is my order?")
    await text("STOP")
    [conv] = await client.conversations_of(f"phone:{CUSTOMER_NUMBER}")
    status, contact = await client.call("GET", f"/v1/contacts/{conv['contact_id']}")
    assert contact["attributes"]["do_not_contact"] == "true"
    status, _ = await client.call("POST", f"/v1/conversations/{conv['id']}/resolve")
    assert status == 200
    body = {"channel": "sms", "contact_id": conv["contact_id"], "text": "A new offer!"}
    status, err = await start_conv(client, **body)
    assert (status, err["error"]["code"]) == (422, "opted_out"), err
    # START opts back in (Twilio's keyword): writing first is allowed again.
    await text("start")
    status, _ = await client.call("POST", f"/v1/conversations/{conv['id']}/resolve")
    assert status == 200
    status, started = await start_conv(client, **body)
    assert status == 201, started


async def test_a_queue_limited_caller_starts_only_what_it_may_see(
    gateway_factory: Any, tmp_path: Path, twilio: TwilioStandin, store_cfg: Any
) -> None:
    cfg = config(tmp_path, store_cfg, twilio)
    lead = "test-lead-general-token"
    cfg["auth"]["tokens"].append(
        {"name": "lead", "role": "supervisor", "token": lead, "queues": ["general"]}
    )
    _, client = await gateway_factory(cfg)
    bob = agent_token("bob")  # bob works in general only

    async def refused_scope(token: str, named: str, **body: Any) -> None:
        status, err = await start_conv(client, token, channel="sms", **body)
        assert status == 403 and err["error"]["code"] == "queue_scope", err
        assert f"queue {named!r}" in err["error"]["message"], err

    invoice = "About your invoice 42: it is now paid."  # the rules' queue: billing
    fresh = {"to": {"address": "+14155550111", "name": "Fay"}}
    # A queue not of its own, even for itself.
    await refused_scope(bob, "billing", queue="billing", text="Hello", **fresh)
    await refused_scope(bob, "billing", queue="billing", assign_to=None, text="Hi", **fresh)
    # Left to routing, the rules would put it where bob could not follow it.
    await refused_scope(bob, "billing", assign_to=None, text=invoice, **fresh)
    # A supervisor of general, for an agent, into the rules' billing queue.
    await refused_scope(lead, "billing", assign_to="alice", text=invoice, **fresh)
    # Nothing of it was stored or sent: no contact, no conversation, no message.
    status, found = await client.call(
        "GET", "/v1/contacts", params={"identity": "phone:+14155550111"}
    )
    assert status == 404, found
    status, page = await client.call("GET", "/v1/conversations")
    assert status == 200 and page["conversations"] == []
    assert not twilio.messages

    # What the caller can see is started: bob's own conversation in billing (it is his) ...
    status, own = await start_conv(client, bob, channel="sms", text=invoice, **fresh)
    assert status == 201, own
    assert (own["queue"], own["assignee"]) == ("billing", "bob")
    # ... and in its queue for routing, by the agent and by the supervisor.
    status, routed = await start_conv(
        client,
        bob,
        channel="sms",
        to={"address": "+14155550122"},
        text="Hello",
        assign_to=None,
        queue="general",
    )
    assert status == 201 and routed["queue"] == "general", routed
    status, led = await start_conv(
        client, lead, channel="sms", to={"address": "+14155550133"}, text="Hello"
    )
    assert status == 201 and led["queue"] == "general", led


async def test_conversation_exists_names_only_a_conversation_the_caller_sees(
    gateway_factory: Any, tmp_path: Path, twilio: TwilioStandin, store_cfg: Any
) -> None:
    _, client = await gateway_factory(config(tmp_path, store_cfg, twilio))
    # The integration token's start, in billing (the rules), for alice.
    status, conv = await start_conv(
        client,
        "test-integration-token",
        channel="sms",
        to={"address": CUSTOMER_NUMBER},
        text="About your invoice 42: it is now paid.",
        assign_to="alice",
    )
    assert status == 201 and conv["queue"] == "billing", conv

    async def exists(token: str) -> str:
        status, err = await start_conv(
            client, token, channel="sms", to={"address": CUSTOMER_NUMBER}, text="Hello"
        )
        assert (status, err["error"]["code"]) == (409, "conversation_exists"), err
        return str(err["error"]["message"])

    # bob (general only) learns that there is one, not which.
    hidden = await exists(agent_token("bob"))
    assert conv["id"] not in hidden and "active conversation" in hidden
    # Those who see it are told which.
    assert conv["id"] in await exists(agent_token("carol"))  # billing is hers
    assert conv["id"] in await exists(ADMIN)


async def test_a_contact_the_caller_cannot_see_is_unknown_to_it(
    gateway_factory: Any, tmp_path: Path, twilio: TwilioStandin, store_cfg: Any
) -> None:
    """`contact_id` of a contact whose conversations are all outside a queue-limited
    caller's queues: as unknown to it as to `GET /v1/contacts/{id}`; nothing is started."""
    _, client = await gateway_factory(config(tmp_path, store_cfg, twilio))
    status, conv = await start_conv(
        client,
        "test-integration-token",
        channel="sms",
        to={"address": CUSTOMER_NUMBER},
        text="About your invoice 42: it is now paid.",
        assign_to="alice",
    )
    assert status == 201 and conv["queue"] == "billing", conv
    status, _ = await client.call("POST", f"/v1/conversations/{conv['id']}/resolve")
    assert status == 200
    contact = conv["contact_id"]
    bob = agent_token("bob")  # general only: the contact's one conversation is in billing
    status, _ = await client.call("GET", f"/v1/contacts/{contact}", token=bob)
    assert status == 404
    status, err = await start_conv(
        client, bob, channel="sms", contact_id=contact, text="Hello", queue="general"
    )
    assert (status, err["error"]["code"]) == (422, "unknown_contact"), err
    status, page = await client.call(
        "GET", "/v1/conversations", params={"contact": conv["contact_id"]}
    )
    assert status == 200 and [c["id"] for c in page["conversations"]] == [conv["id"]], page
    # Who sees it starts with it.
    status, again = await start_conv(
        client, agent_token("carol"), channel="sms", contact_id=contact, text="Hello"
    )
    assert status == 201 and again["contact_id"] == contact, again
