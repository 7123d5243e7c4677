"""Building the outbound email. Pure: no I/O, so every header rule is unit-testable."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from email import message_from_bytes
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.policy import SMTP
from email.utils import format_datetime
from html import escape

from connectors.base import OutboundMessage, Prompt
from connectors.email.parse import OUR_MESSAGE_ID_PREFIX, normalize_msgid
from connectors.email.settings import EmailSettings

# C0 and C1 controls but TAB (whitespace, collapsed below), DEL, line/paragraph separators.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]+")
# How many times a value may decode to another encoded word before it is kept literal.
_MAX_DECODINGS = 5
_REPLY_PREFIX_RE = re.compile(
    r"^\s*((re|aw|sv|vs|antw|odp|ynt|atb|rif|r)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE
)
_TOKEN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=-]{0,63}")
# How many ids the References header keeps (the first, then the most recent ones).
MAX_REFERENCES = 20


class ComposeError(ValueError):
    """The message cannot be built (e.g. an invalid recipient): a permanent failure."""


def _strip_controls(value: str) -> str:
    # Lone surrogates (undecodable bytes kept by a decoder) cannot be encoded: U+FFFD.
    value = value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return " ".join(_CONTROL_RE.sub(" ", value).split())


def _as_the_email_package_reads(value: str) -> str:
    """The text the email package makes of `value` when it is set as a header: it
    decodes RFC 2047 encoded words, and an encoded word may hold CR LF."""
    try:
        return str(SMTP.header_factory("subject", value))
    except Exception:  # it cannot read it: make sure it reads nothing into it either
        return value.replace("=?", "= ?")


def clean_header(value: str) -> str:
    """A header value that can never break into a new header line, on any Python: CR, LF,
    NUL and other control characters become single spaces, after every decoding step
    the email package will apply (an encoded word decoding to another encoded word
    with CR LF in it), until the value reads as itself."""
    for _ in range(_MAX_DECODINGS):
        cleaned = _strip_controls(value)
        decoded = _as_the_email_package_reads(cleaned)
        if decoded == cleaned:
            return cleaned
        value = decoded
    # Still decoding to more encoded words: keep the text literal, never decoded again.
    return _strip_controls(value).replace("=?", "= ?")


def _header_names(message: Message) -> list[list[str]]:
    """The header names of the message and of each MIME part we built, in order. An
    attached message (message/rfc822) is the customer's content: not descended into."""
    names = [[k.lower() for k in message]]
    if message.get_content_maintype() == "multipart" and message.is_multipart():
        for part in message.get_payload():
            if isinstance(part, Message):
                names += _header_names(part)
    return names


def _check_wire(msg: EmailMessage) -> None:
    """Raise `ComposeError` unless the message, as it goes on the wire, has exactly the
    header fields we set, in every MIME part: the last line of defence against a value
    that folds into a header of its own, whatever the standard library does."""
    try:
        sent = message_from_bytes(msg.as_bytes(policy=SMTP), policy=SMTP)
    except Exception as exc:  # e.g. an attachment type the email package cannot write
        raise ComposeError(f"the message cannot be written: {type(exc).__name__}") from None
    if _header_names(sent) != _header_names(msg):
        raise ComposeError("a header value would have broken into another header line")


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
    if "=?" in addr and _as_the_email_package_reads(addr) != addr:
        # The email package would decode it into another address (or another header).
        raise ComposeError(f"invalid email address {addr!r}: it holds an RFC 2047 encoded word")
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
    html_body = message.html
    if message.prompt is not None and any(c.url for c in message.prompt.choices):
        text, html_body = _with_prompt(text, html_body, message.prompt)
    msg.set_content(text)
    if html_body:
        msg.add_alternative(html_body, subtype="html")
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
    _check_wire(msg)
    return msg, mid


def _with_prompt(text: str, html_body: str | None, prompt: Prompt) -> tuple[str, str]:
    """A survey's choices as one-click links: listed in the text, buttons in the HTML."""
    choices = [c for c in prompt.choices if c.url]
    optout = prompt.texts.get("optout_link", "No more surveys")
    body = html_body or "".join(f"<p>{escape(line)}</p>" for line in text.splitlines() if line)
    text += "\n\n" + "\n".join(f"{c.label}: {c.url}" for c in choices)
    if prompt.optout_url:
        text += f"\n\n{optout}: {prompt.optout_url}"
    buttons = " ".join(
        f'<a href="{escape(c.url or "", quote=True)}" style="display:inline-block;'
        "min-width:2em;padding:8px 12px;margin:2px;border:1px solid #2447d5;border-radius:8px;"
        f'color:#2447d5;text-decoration:none;text-align:center;font-weight:600">{escape(c.label)}</a>'
        for c in choices
    )
    body += f'<p class="survey">{buttons}</p>'
    if prompt.optout_url:
        body += (
            f'<p style="font-size:12px"><a href="{escape(prompt.optout_url, quote=True)}">'
            f"{escape(optout)}</a></p>"
        )
    return text, f"<html><body>{body}</body></html>"
