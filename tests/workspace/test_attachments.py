"""Files agents attach to a reply: uploaded as multipart, size-capped, stored as blobs, and
degraded to what the channel carries — a signed link where it cannot carry files (the `api`
channel, web chat), the file itself as MMS media on Twilio."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiohttp

from tests.gateway.conftest import ADMIN, Receiver, agent_token, base_config, wait_for
from tests.standins.twilio import TwilioStandin
from tests.twilio.test_twilio_gateway import post_sms, routed_conversation, start, status_is

PDF = b"%PDF-1.4 invoice " + bytes(range(256)) * 300  # ~77 kB: over the tests' JSON body cap


def _form(text: str, *files: tuple[str, bytes, str], **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("text", text)
    for key, value in fields.items():
        form.add_field(key, value)
    for name, data, ctype in files:
        form.add_field("file", data, filename=name, content_type=ctype)
    return form


async def test_a_file_goes_as_a_signed_link_where_the_channel_has_no_files(
    gateway_factory: Any, receiver: Receiver, tmp_path: Path, on_backend: Any
) -> None:
    cfg = on_backend(base_config(tmp_path / "db.sqlite", receiver.url))
    cfg["agent_attachments"] = {"max_bytes": 100_000}
    cfg["auth"]["visibility"] = "assigned"  # agents see their own conversations only
    _, client = await gateway_factory(cfg)
    status, body = await client.inbound("f1", "Send me the invoice please")
    conv_id = body["conversation_id"]
    conv = await wait_for(lambda: client.assigned(conv_id))
    token = agent_token(conv["assignee"])

    status, msg = await client.call(
        "POST",
        f"/v1/conversations/{conv_id}/messages",
        token=token,
        data=_form("Here it is.", ("invoice 42.pdf", PDF, "application/pdf")),
    )
    assert status == 202, msg
    [att] = msg["attachments"]
    assert (att["name"], att["content_type"], att["size"]) == (
        "invoice 42.pdf",
        "application/pdf",
        len(PDF),
    )
    # The agent's console fetches it with its token.
    async with client.http.get(
        client.base + att["url"], headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        assert resp.status == 200 and await resp.read() == PDF

    await wait_for(lambda: receiver.requests)
    text = receiver.bodies()[0]["text"]
    assert text.startswith("Here it is.\n\nAttachments (download links):\ninvoice 42.pdf: http")
    url = re.search(r"(http\S+/files/\S+)", text)
    assert url is not None
    async with client.http.get(url.group(1)) as resp:  # no token: the link is the key
        assert resp.status == 200 and await resp.read() == PDF
    async with client.http.get(url.group(1).replace("sig=", "sig=0")) as resp:
        assert resp.status == 403
    async with client.http.get(url.group(1).replace("exp=", "exp=1")) as resp:
        assert resp.status == 403

    # Too large, too many: refused before anything is stored.
    status, err = await client.call(
        "POST",
        f"/v1/conversations/{conv_id}/messages",
        token=token,
        data=_form("big", ("big.bin", b"x" * 100_001, "application/octet-stream")),
    )
    assert status == 413 and err["error"]["code"] == "too_large"
    status, _ = await client.call(
        "POST",
        f"/v1/conversations/{conv_id}/messages",
        token=token,
        data=_form("many", *[(f"{i}.txt", b"x", "text/plain") for i in range(6)]),
    )
    assert status == 413
    assert len((await client.conversation(conv_id))["messages"]) == 2

    # A note takes files too; they never go out.
    status, note = await client.call(
        "POST",
        f"/v1/conversations/{conv_id}/notes",
        token=token,
        data=_form("scan of the claim", ("claim.png", b"\x89PNG fake", "image/png")),
    )
    assert status == 201, note
    assert note["private"] is True and note["attachments"][0]["name"] == "claim.png"
    note_file = client.base + note["attachments"][0]["url"]
    for who, expected in ((token, 200), (ADMIN, 200), (agent_token("carol"), 404)):
        async with client.http.get(note_file, headers={"Authorization": f"Bearer {who}"}) as resp:
            assert resp.status == expected, who
            if expected == 200:
                assert await resp.read() == b"\x89PNG fake"
    await asyncio.sleep(0.3)
    assert len(receiver.requests) == 1


async def test_twilio_gets_the_file_as_media(
    gateway_factory: Any, tmp_path: Path, twilio: TwilioStandin
) -> None:
    client = await start(gateway_factory, tmp_path, twilio)
    await post_sms(client, twilio, "photo of the label please")
    conv = await routed_conversation(client)
    status, msg = await client.call(
        "POST",
        f"/v1/conversations/{conv['id']}/messages",
        token=agent_token(conv["assignee"]),
        data=_form("The label:", ("label.png", b"\x89PNG label", "image/png")),
    )
    assert status == 202, msg
    await wait_for(lambda: status_is(client, conv["id"], msg["id"], "sent", "failed"))
    [created] = twilio.messages
    form = created["_request"]
    assert form["Body"] == "The label:"
    media = form["MediaUrl"]
    assert "/files/" in media and "sig=" in media
    async with client.http.get(media) as resp:
        assert resp.status == 200 and await resp.read() == b"\x89PNG label"


async def test_a_broken_upload_is_refused_not_an_error(gateway_factory: Any) -> None:
    _, client = await gateway_factory()
    status, body = await client.inbound("b1", "hello")
    conv_id = body["conversation_id"]
    broken = [
        ("multipart/form-data", b"no boundary"),
        (
            "multipart/form-data; boundary=xx",
            b'--xx\r\nContent-Disposition: form-data; name="text"\r\n\r\nhi',
        ),
        (
            "multipart/form-data; boundary=xx",
            b'--xx\r\nContent-Disposition: form-data; name="\x0f\xf3"\r\n\r\nx\r\n--xx--\r\n',
        ),
        (
            "multipart/mixed; boundary=xx",
            b"--xx\r\nContent-Type: multipart/mixed; boundary=yy\r\n\r\n--yy--\r\n--xx--\r\n",
        ),
    ]
    for path in ("messages", "notes"):
        for ctype, raw in broken:
            status, err = await client.call(
                "POST",
                f"/v1/conversations/{conv_id}/{path}",
                data=raw,
                headers={"Content-Type": ctype},
            )
            assert status == 400 and err["error"]["code"] == "invalid_body", (path, ctype, err)
    # A form's booleans are true/false (1/0, on/off): anything else is not one.
    status, err = await client.call(
        "POST",
        f"/v1/conversations/{conv_id}/messages",
        data=_form("hi", private="maybe"),
    )
    assert status == 422, err
    status, note = await client.call(
        "POST", f"/v1/conversations/{conv_id}/messages", data=_form("hi", private="true")
    )
    assert status == 202 and note["private"] is True
