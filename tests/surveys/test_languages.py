"""The acknowledgement speaks the contact's language from the same catalogs, the config
overrides a text, and `PATCH /v1/contacts/{id}` sets the language through the API."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.gateway.conftest import Receiver, base_config, gateway_factory, receiver, wait_for
from tests.surveys.conftest import OnBackend
from tests.surveys.helpers import Clock

__all__ = ["gateway_factory", "receiver"]


def texts(rcv: Receiver) -> list[str]:
    return [str(b.get("text")) for b in rcv.bodies()]


async def test_acknowledgement_in_the_contacts_language(
    gateway_factory: Any, tmp_path: Path, receiver: Receiver, on_backend: OnBackend
) -> None:
    clock = Clock()
    cfg = on_backend(base_config(tmp_path / "db.sqlite", receiver.url))
    cfg["conversations"] = {"reopen_window": "1h", "acknowledgement": {"max_per_contact": 10}}
    cfg["texts"] = {"en": {"acknowledgement": "Got it ({reference})."}}
    _, client = await gateway_factory(cfg, clock=clock)

    # Told by the channel (an attribute on the inbound message): German, from the catalog.
    status, body = await client.inbound(
        "m-1", "Hallo", sender="kunde-1", from_={"attributes": {"language": "de-DE"}}
    )
    assert status in (200, 201, 202), body
    [german] = await wait_for(lambda: texts(receiver))
    assert re.fullmatch(
        r"Danke für Ihre Nachricht\. Wir antworten so bald wie möglich\. Ihre Referenz: \w+",
        german,
    )

    # No language known: the default (English), with the config's override.
    status, _ = await client.inbound("m-2", "Hello", sender="cust-2")
    await wait_for(lambda: len(texts(receiver)) == 2)
    assert re.fullmatch(r"Got it \(\w+\)\.", texts(receiver)[1])

    # The API sets the first contact's language to English; its next conversation is
    # acknowledged in English.
    conv = await client.conversation(body["conversation_id"])
    status, contact = await client.call(
        "PATCH", f"/v1/contacts/{conv['contact_id']}", json={"attributes": {"language": "en"}}
    )
    assert status == 200 and contact["attributes"]["language"] == "en"
    status, _ = await client.call("POST", f"/v1/conversations/{conv['id']}/resolve")
    assert status == 200
    clock.advance(7200)  # past the reopen window: a new conversation
    status, again = await client.inbound("m-3", "Noch eine Frage", sender="kunde-1")
    assert again["conversation_id"] != conv["id"]
    await wait_for(lambda: len(texts(receiver)) == 3)
    assert re.fullmatch(r"Got it \(\w+\)\.", texts(receiver)[2])

    # null removes an attribute; a value that is not a string is refused.
    status, contact = await client.call(
        "PATCH", f"/v1/contacts/{conv['contact_id']}", json={"attributes": {"language": None}}
    )
    assert status == 200 and "language" not in contact["attributes"]
    status, bad = await client.call(
        "PATCH", f"/v1/contacts/{conv['contact_id']}", json={"attributes": {"language": 7}}
    )
    assert status == 422, bad
    status, _ = await client.call(
        "PATCH", "/v1/contacts/ct_nobody", json={"attributes": {"language": "de"}}
    )
    assert status == 404
