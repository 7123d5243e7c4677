"""Building the outbound email. Pure: no I/O, so every header rule is unit-testable."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from connectors.base import OutboundMessage
from connectors.email.parse import OUR_MESSAGE_ID_PREFIX, normalize_msgid
from connectors.email.settings import EmailSettings

_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u2028\u2029\x85]+")
_REPLY_PREFIX_RE = re.compile(
    r"^\s*((re|aw|sv|vs|antw|odp|ynt|atb|rif|r)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE
)
_TOKEN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=-]{0,63}")
# How many ids the References header keeps (the first, then the most recent ones).
MAX_REFERENCES = 20


class ComposeError(ValueError):
    """The message cannot be built (e.g. an invalid recipient): a permanent failure."""


def clean_header(value: str) -> str:
    """A header value that can never break into a new header line: CR, LF and other
    control characters become single spaces."""
    return " ".join(_CONTROL_RE.sub(" ", value).split())


def new_message_id(domain: str) -> str:
    return f"<{OUR_MESSAGE_ID_PREFIX}{uuid.uuid4().hex}@{domain}>"


def plus_address(address: str, token: str) -> str:
    local, _, domain = address.rpartition("@")
    local = local.split("+", 1)[0]
    return f"{local}+{token}@{domain}"


def _address(addr: str, display_name: str | None = None) -> Address:
    addr = addr.strip()
    if _CONTROL_RE.search(addr) or any(c.isspace() for c in addr) or addr.count("@") != 1:
        raise ComposeError(f"invalid email address {addr!r}")
    local, _, domain = addr.rpartition("@")
    if not local or not domain:
        raise ComposeError(f"invalid email address {addr!r}")
    try:
        return Address(display_name=clean_header(display_name or ""), username=local, domain=domain)
    except (ValueError, IndexError) as exc:
        raise ComposeError(f"invalid email address {addr!r}: {exc}") from exc


def reply_subject(subject: str | None, *, is_reply: bool, token: str | None) -> str:
    subject = clean_header(subject or "")
    if not subject:
        subject = "Your request"
    elif is_reply:
        subject = (
            "Re: " + _REPLY_PREFIX_RE.sub("", subject)
            if _REPLY_PREFIX_RE.match(subject)
            else "Re: " + subject
        )
    if token and f"[#{token}]" not in subject:
        subject = f"{subject} [#{token}]"
    return subject


def build_message(
    message: OutboundMessage,
    settings: EmailSettings,
    *,
    message_id: str | None = None,
    now: datetime | None = None,
) -> tuple[EmailMessage, str]:
    """The email for one outbound message and its Message-ID.

    Raises `ComposeError` when it cannot be built (a permanent failure, not a retry)."""
    token = message.thread_token
    if token is not None and not _TOKEN_RE.fullmatch(token):
        raise ComposeError(f"thread token {token!r} cannot go into an address")
    mid = message_id or new_message_id(settings.id_domain)
    refs: list[str] = []
    for ref in message.thread_refs:
        norm = normalize_msgid(clean_header(ref)) if ref else None
        if norm and norm not in refs:
            refs.append(norm)

    msg = EmailMessage(policy=SMTP)
    display = message.sender_name or settings.from_name
    msg["From"] = _address(settings.address, display)
    msg["To"] = _address(message.to.address)
    if token:
        msg["Reply-To"] = _address(
            plus_address(settings.reply_to or settings.address, token), display
        )
    elif settings.reply_to:
        msg["Reply-To"] = _address(settings.reply_to, display)
    msg["Subject"] = reply_subject(message.subject, is_reply=bool(refs), token=token)
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    msg["Message-ID"] = mid
    if refs:
        msg["In-Reply-To"] = refs[-1]
        kept = refs if len(refs) <= MAX_REFERENCES else [refs[0], *refs[-(MAX_REFERENCES - 1) :]]
        msg["References"] = " ".join(kept)
    if message.automatic:
        msg["Auto-Submitted"] = "auto-replied"
        msg["X-Auto-Response-Suppress"] = "All"
        msg["X-Loop"] = settings.address
    msg["X-Switchboard-Message"] = clean_header(message.id)

    text = message.text or ""
    links = [a for a in message.attachments if a.data is None and a.url]
    if links:
        text += "\n\n" + "\n".join(f"{clean_header(a.name)}: {a.url}" for a in links)
    msg.set_content(text)
    if message.html:
        msg.add_alternative(message.html, subtype="html")
    for att in message.attachments:
        if att.data is None:
            continue
        maintype, _, subtype = (att.content_type or "application/octet-stream").partition("/")
        if not subtype or _CONTROL_RE.search(att.content_type):
            maintype, subtype = "application", "octet-stream"
        msg.add_attachment(
            att.data,
            maintype=maintype,
            subtype=subtype,
            filename=clean_header(att.name) or "attachment",
        )
    return msg, mid
