"""Files agents attach to a reply or a note (issue 14).

An upload is `multipart/form-data`: the body's fields (`text`, `private` ...) as form
fields and each file as a part named `file`, every file capped by
`agent_attachments.max_bytes`. The files are stored as blobs with the message; the outbox
then degrades them to what the channel carries (`for_channel`): a channel that takes files
gets them, every other one a signed download link per file in the text
(`/files/{blob}?exp=&sig=`, served without a token while the signature holds).
"""

from __future__ import annotations

import hashlib
import hmac
import mimetypes
import time
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote

from aiohttp import BodyPartReader, ClientPayloadError, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel, ValidationError

from connectors.http import fail, validation_details
from gateway.api.common import gateway_of, read_body
from gateway.ids import new_id

M = TypeVar("M", bound=BaseModel)

# Form fields that are JSON booleans or lists in the JSON body.
_BOOLS = ("private", "typing")
_LISTS = ("mentions",)
_TRUE = {"true": True, "1": True, "on": True, "false": False, "0": False, "off": False}


@dataclass(slots=True)
class Upload:
    name: str
    content_type: str
    data: bytes


@dataclass(slots=True)
class Uploads:
    files: list[Upload] = field(default_factory=list)

    def stored(self) -> tuple[list[dict[str, Any]], dict[str, tuple[str, bytes]]]:
        """The attachments as a message stores them, and the blobs to store with it."""
        attachments: list[dict[str, Any]] = []
        blobs: dict[str, tuple[str, bytes]] = {}
        for f in self.files:
            blob = new_id("bl")
            blobs[blob] = (f.content_type, f.data)
            attachments.append(
                {
                    "name": f.name,
                    "content_type": f.content_type,
                    "size": len(f.data),
                    "blob": blob,
                    "url": f"/v1/blobs/{blob}",
                }
            )
        return attachments, blobs


def _safe_name(raw: str | None) -> str:
    # Some clients (aiohttp's own) percent-encode the file name in the part's header.
    name = unquote(raw or "file").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable() and c not in '"<>')[:200].strip()
    return name or "file"


async def read_upload(request: web.Request, model: type[M]) -> tuple[M, Uploads]:
    """The body as `model` and its files: JSON (no files) or multipart/form-data."""
    if not request.content_type.startswith("multipart/"):
        return await read_body(request, model), Uploads()
    try:
        fields, uploads = await _read_parts(request)
    except (
        ValueError,
        AssertionError,
        LookupError,
        ClientPayloadError,
        HttpProcessingError,
    ) as exc:
        # A broken body (no boundary, cut short, a bad charset): the client's fault.
        fail(400, "invalid_body", f"malformed multipart body: {exc}")
    try:
        return model.model_validate(fields), uploads
    except ValidationError as exc:
        fail(422, "validation_error", "the form is not valid", validation_details(exc.errors()))


async def _read_parts(request: web.Request) -> tuple[dict[str, Any], Uploads]:
    cfg = gateway_of(request).config.agent_attachments
    fields: dict[str, Any] = {}
    uploads = Uploads()
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            fail(400, "invalid_body", "nested multipart bodies are not accepted")
        if part.name == "file":
            if part.filename is None:  # a value, not a file
                fail(422, "validation_error", "`file` must be a file part (with a filename)")
            if len(uploads.files) >= cfg.max_files:
                fail(413, "too_large", f"at most {cfg.max_files} files per message")
            data = bytearray()
            while chunk := await part.read_chunk(65536):
                data += chunk
                if len(data) > cfg.max_bytes:
                    fail(413, "too_large", f"a file is larger than {cfg.max_bytes} bytes")
            name = _safe_name(part.filename)
            content_type = part.headers.get("Content-Type") or (
                mimetypes.guess_type(name)[0] or "application/octet-stream"
            )
            uploads.files.append(Upload(name, content_type.split(";")[0].strip(), bytes(data)))
        elif part.name:
            if len(fields) >= 20:
                fail(413, "too_large", "too many form fields")
            raw = await part.text()
            if len(raw) > 1_000_000:
                fail(413, "too_large", f"the field {part.name} is too long")
            if part.name in _BOOLS:
                # A form's true/false; anything else stays text (refused as not a boolean).
                word = raw.strip().lower()
                fields[part.name] = _TRUE.get(word, raw)
            elif part.name in _LISTS:
                fields.setdefault(part.name, []).extend(
                    x.strip() for x in raw.replace(",", " ").split() if x.strip()
                )
            else:
                fields[part.name] = raw
    return fields, uploads


# --- signed links for channels without files -------------------------------------------------
def sign(secret: bytes, blob: str, expires: int) -> str:
    return hmac.new(secret, f"{blob}.{expires}".encode(), hashlib.sha256).hexdigest()[:32]


def link(base_url: str, secret: bytes, blob: str, ttl: float, now: float | None = None) -> str:
    expires = int((now if now is not None else time.time()) + ttl)
    return f"{base_url.rstrip('/')}/files/{blob}?exp={expires}&sig={sign(secret, blob, expires)}"


def verify(secret: bytes, blob: str, exp: str, sig: str, now: float | None = None) -> bool:
    try:
        expires = int(exp)
    except ValueError:
        return False
    if expires < (now if now is not None else time.time()):
        return False
    return hmac.compare_digest(sign(secret, blob, expires).encode(), sig.encode("utf-8", "replace"))
