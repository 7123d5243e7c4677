"""How an agent's file leaves per channel (gateway/workspace/files.py): email attaches it
(checked in the MIME message the email connector builds), a channel without files gets a
signed link under a heading in the contact's language."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from connectors.base import Capability, Connector, Identity, InboundMessage
from connectors.email.compose import build_message
from gateway.i18n import Texts
from gateway.outbox import degrade
from gateway.store import SqliteStore
from gateway.store.base import Classification, IngestRequest, OutboundRequest, OutboxItem
from gateway.workspace.attachments import verify
from gateway.workspace.files import AgentFiles
from tests.email.email_support import make_settings


class _Channel:
    def __init__(self, *caps: Capability) -> None:
        self.capabilities = frozenset({Capability.TEXT, *caps})


async def _queued(tmp_path: Path, language: str | None) -> tuple[SqliteStore, OutboxItem]:
    store = SqliteStore(tmp_path / "s.db")
    await store.open()
    attrs = {"language": language} if language else {}
    msg = InboundMessage(
        external_id="e1",
        sender=Identity("email", "ann@example.com"),
        text="the invoice?",
        contact_attributes=attrs,
    )
    out = await store.ingest(
        IngestRequest(
            "mail",
            "email",
            msg,
            lambda a: Classification("general", 1),
            1000.0,
            86400.0,
        )
    )
    assert out.conversation is not None
    await store.add_outbound(
        OutboundRequest(
            out.conversation.id,
            "Here it is.",
            "agent",
            "alice",
            1001.0,
            attachments=[
                {"name": "inv.pdf", "content_type": "application/pdf", "size": 5, "blob": "bl_1"}
            ],
            blobs={"bl_1": ("application/pdf", b"%PDF!")},
        )
    )
    [item] = await store.outbox_lease(2000.0, 10, 30)
    return store, item


def _files(store: SqliteStore, texts: Texts) -> AgentFiles:
    return AgentFiles(store, texts, lambda: "https://help.example", 3600, lambda: 5000.0)


async def test_email_attaches_the_file(tmp_path: Path) -> None:
    store, item = await _queued(tmp_path, None)
    try:
        assert item.attachments[0]["blob"] == "bl_1"
        email = cast(Connector, _Channel(Capability.ATTACHMENTS, Capability.HTML))
        files = _files(store, Texts())
        message = await files.attach(item, email, degrade(item, email))
        [att] = message.attachments
        assert (att.name, att.content_type, att.data) == ("inv.pdf", "application/pdf", b"%PDF!")
        assert att.url and att.url.startswith("https://help.example/files/bl_1?")
        mime, _ = build_message(message, make_settings())
        [part] = list(mime.iter_attachments())
        assert part.get_filename() == "inv.pdf" and part.get_content() == b"%PDF!"
        assert message.text == "Here it is."  # the file is attached, not linked
    finally:
        await store.close()


async def test_a_channel_without_files_gets_a_link_in_the_contacts_language(
    tmp_path: Path,
) -> None:
    store, item = await _queued(tmp_path, "de")
    try:
        chat = cast(Connector, _Channel())
        files = _files(store, Texts())
        message = await files.attach(item, chat, degrade(item, chat))
        assert message.attachments == []
        head, link = message.text.split("\n\nAnhänge (Download-Links):\n")
        assert head == "Here it is."
        name, url = link.split(": ", 1)
        assert name == "inv.pdf" and url.startswith("https://help.example/files/bl_1?exp=")
        query: dict[str, Any] = dict(p.split("=") for p in url.split("?", 1)[1].split("&"))
        secret = await files.secret()
        assert verify(secret, "bl_1", query["exp"], query["sig"], 5000.0)
        assert not verify(secret, "bl_1", query["exp"], query["sig"], 5000.0 + 3601)
        assert not verify(secret, "bl_2", query["exp"], query["sig"], 5000.0)
    finally:
        await store.close()
