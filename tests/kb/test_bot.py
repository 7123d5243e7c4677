"""The knowledge-base bot stage (`bot: knowledge_base` on a routing rule), end to end on
the `api` channel: it answers with the article in the contact's language and resolves;
the next message goes to a person; it stays out of the way when it has no good answer or
the customer asks for a person at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.kb.bot import BOT_QUEUE, HOLD_REASON
from tests.gateway.conftest import (  # noqa: F401 - fixtures used by name
    Client,
    Receiver,
    base_config,
    gateway_factory,
    receiver,
    wait_for,
)

DEMO_KB = Path(__file__).resolve().parents[2] / "config" / "kb"


def bot_config(tmp_path: Path, outbound_url: str) -> dict[str, Any]:
    cfg = base_config(tmp_path / "db.sqlite", outbound_url)
    cfg["knowledge_base"] = {"path": str(DEMO_KB)}
    cfg["routing"]["rules"].insert(
        0,
        {
            "name": "self-service",
            "when": {"channel": "api"},
            "then": {"queue": "general"},
            "bot": "knowledge_base",
        },
    )
    return cfg


async def only_conversation(client: Client, sender: str) -> dict[str, Any]:
    (conv,) = await client.conversations_of(f"api:{sender}")
    return await client.conversation(conv["id"])


async def test_bot_answers_in_english_then_hands_off_to_a_person(
    gateway_factory: Any,  # noqa: F811
    receiver: Receiver,  # noqa: F811
    tmp_path: Path,
) -> None:
    _, client = await gateway_factory(bot_config(tmp_path, receiver.url))
    status, _ = await client.inbound("e1", "I forgot my password, how can I reset it?", "ann")
    assert status in (200, 201, 202)
    await wait_for(lambda: receiver.bodies(), timeout=10)
    reply = receiver.bodies()[0]
    text = str(reply.get("text") or reply)
    assert "Reset your password" in text and "/help/en/password-reset" in text
    assert 'Reply "agent"' in text
    conv = await only_conversation(client, "ann")
    assert conv["status"] == "resolved" and conv["assignee"] is None
    assert conv["queue"] == BOT_QUEUE and HOLD_REASON in conv["routing"]["reasons"]
    assert conv["messages"][1]["automated"] is True

    # The customer asks for a person: the same conversation goes to the rule's queue and
    # an agent gets it.
    await client.inbound("e2", "agent", "ann")

    async def handed_off() -> dict[str, Any] | None:
        c = await only_conversation(client, "ann")
        return c if c["assignee"] else None

    conv = await wait_for(handed_off, timeout=10)
    assert conv["queue"] == "general" and conv["status"] == "assigned"
    assert len(receiver.bodies()) == 1  # the bot said nothing more


async def test_bot_answers_in_german_from_the_message_words(
    gateway_factory: Any,  # noqa: F811
    receiver: Receiver,  # noqa: F811
    tmp_path: Path,
) -> None:
    _, client = await gateway_factory(bot_config(tmp_path, receiver.url))
    await client.inbound("g1", "Ich habe die Rechnung doppelt bezahlt, was nun?", "bea")
    await wait_for(lambda: receiver.bodies(), timeout=10)
    text = str(receiver.bodies()[0].get("text"))
    assert text.startswith("Rückerstattung bei doppelter Zahlung")
    assert "/help/de/rueckerstattung" in text and "„Mensch“" in text


async def test_no_bot_without_a_good_answer_or_when_a_person_is_asked_for(
    gateway_factory: Any,  # noqa: F811
    receiver: Receiver,  # noqa: F811
    tmp_path: Path,
) -> None:
    _, client = await gateway_factory(bot_config(tmp_path, receiver.url))
    await client.inbound("n1", "My blender makes strange noises since yesterday", "cy")
    await client.inbound("n2", "Mensch", "dee")

    async def both_assigned() -> bool:
        convs = [await only_conversation(client, who) for who in ("cy", "dee")]
        return all(c["assignee"] for c in convs)

    await wait_for(both_assigned, timeout=10)
    for who in ("cy", "dee"):
        conv = await only_conversation(client, who)
        assert conv["queue"] == "general" and HOLD_REASON not in conv["routing"]["reasons"]
    assert receiver.bodies() == []


def test_a_bot_rule_needs_a_knowledge_base(tmp_path: Path) -> None:
    from gateway.config import ConfigError, load_config_text
    from tests.gateway.conftest import config_text

    cfg = bot_config(tmp_path, "http://127.0.0.1:9/none")
    del cfg["knowledge_base"]
    try:
        load_config_text(config_text(cfg))
    except ConfigError as exc:
        assert [(p.path, p.message) for p in exc.problems] == [
            ("routing.rules[0].bot", "bot: knowledge_base needs a knowledge_base section")
        ]
    else:
        raise AssertionError("accepted")


async def test_a_second_message_while_the_bot_answers_goes_to_a_person(
    gateway_factory: Any,  # noqa: F811
    receiver: Receiver,  # noqa: F811
    tmp_path: Path,
) -> None:
    import asyncio

    _, client = await gateway_factory(bot_config(tmp_path, receiver.url))
    await asyncio.gather(
        client.inbound("r1", "How do I reset my password?", "eve"),
        client.inbound("r2", "Also my parcel is late", "eve"),
    )

    async def handed_off() -> dict[str, Any] | None:
        c = await only_conversation(client, "eve")
        return c if c["assignee"] else None

    conv = await wait_for(handed_off, timeout=10)
    assert conv["queue"] == "general"
    # Whichever arrived first, both are in the one conversation a person now has.
    assert sorted(m["text"] for m in conv["messages"] if m["direction"] == "in") == [
        "Also my parcel is late",
        "How do I reset my password?",
    ]
    assert len([m for m in conv["messages"] if m["direction"] == "out"]) <= 1
